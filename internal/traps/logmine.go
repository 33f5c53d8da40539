package traps

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"moat/internal/logfollow"
	"moat/internal/smtp"
)

// Observation is one rejection found in a mail log: Client asked for Addr
// and the server said there is no such mailbox.
type Observation struct {
	Client netip.Addr `json:"client"`
	Addr   string     `json:"addr"`
}

// LineMatcher finds "no such mailbox" rejections in the backend's log.
//
// It reads only lines whose header (logfollow.ParseSyslog) names Postfix's
// smtpd, and only their fixed fields (logfollow.ParseReject): a RCPT
// refused with 550 5.1.1, by whom (the client address Postfix wrote), and
// the recipient that opens the reply text:
//
//	NOQUEUE: reject: RCPT from name[192.0.2.1]: 550 5.1.1 <a@example.org>: Recipient address rejected: User unknown in …; from=<…> to=<…> proto=ESMTP helo=<…>
//
// Nothing after the recipient is read. A line in which Postfix's words
// "Recipient address rejected" come twice is ambiguous (a quoted recipient
// can hold them, and Postfix logs it unquoted) and is not read either.
//
// With a pattern (traps.reject_pattern), the pattern replaces the reading
// of the record: it is matched at the start of the text that follows the
// queue id ("reject: RCPT from …"), never searched for further on, and its
// named groups "client" and "addr" give the client's address and the
// recipient.
type LineMatcher struct {
	re           *regexp.Regexp // nil: Postfix's record, read by its fields
	client, addr int
}

// NewLineMatcher returns the matcher for pattern; "" is Postfix's record
// read by its fields.
func NewLineMatcher(pattern string) (*LineMatcher, error) {
	if pattern == "" {
		return &LineMatcher{}, nil
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)`)
	if err != nil {
		return nil, fmt.Errorf("traps: reject pattern: %v", err)
	}
	m := &LineMatcher{re: re, client: re.SubexpIndex("client"), addr: re.SubexpIndex("addr")}
	if m.client < 0 || m.addr < 0 {
		return nil, fmt.Errorf("traps: reject pattern: needs the named groups (?P<client>…) and (?P<addr>…)")
	}
	return m, nil
}

// Match returns the rejection in line, if there is one.
func (m *LineMatcher) Match(line string) (Observation, bool) {
	e, ok := logfollow.ParseSyslog(line)
	if !ok || e.Daemon() != "smtpd" {
		return Observation{}, false
	}
	if m.re != nil {
		return m.matchPattern(e.Text)
	}
	r, ok := logfollow.ParseReject(e.Text)
	if !ok || r.Milter || r.Stage != "RCPT" || !unknownUser(r.Code, r.Status, "") {
		return Observation{}, false
	}
	rcpt, ok := r.Recipient()
	if !ok || strings.Count(r.Rest, logfollow.RcptRejected) != 1 {
		return Observation{}, false
	}
	addr, ok := plainAddr(rcpt)
	if !ok {
		return Observation{}, false
	}
	return Observation{Client: r.Client, Addr: addr}, true
}

// matchPattern applies the operator's pattern after the queue id.
func (m *LineMatcher) matchPattern(text string) (Observation, bool) {
	qid, rest, ok := strings.Cut(text, ": ")
	if !ok || strings.ContainsAny(qid, " []<>") {
		return Observation{}, false
	}
	sm := m.re.FindStringSubmatch(rest)
	if sm == nil {
		return Observation{}, false
	}
	client, ok := logfollow.ClientAddr(strings.TrimPrefix(sm[m.client], "IPv6:"))
	if !ok {
		return Observation{}, false
	}
	addr, ok := plainAddr(sm[m.addr])
	if !ok {
		return Observation{}, false
	}
	return Observation{Client: client, Addr: addr}, true
}

// plainAddr normalises an address read from a log and refuses one that
// needs quoting: Postfix logs recipients unquoted, so such an address has
// no reliable end.
func plainAddr(s string) (string, bool) {
	n, err := smtp.Normalize(s)
	if err != nil || strings.ContainsAny(n, "\" ") || smtp.Domain(n) == "" {
		return "", false
	}
	return n, true
}

// MineFile reads a whole log file once (gzip-compressed when its name ends
// in .gz) and calls fn for every rejection in it. It returns the number of
// lines read.
func MineFile(path string, m *LineMatcher, fn func(Observation)) (int, error) {
	return logfollow.ReadFile(path, func(line string) {
		if o, ok := m.Match(line); ok {
			fn(o)
		}
	})
}
