package logfollow

import (
	"net/netip"
	"strings"
)

// Reject is a Postfix reject record read by its fixed fields. Postfix
// writes them as
//
//	postfix/smtpd:      NOQUEUE: reject: RCPT from name[192.0.2.1]:4711: 550 5.1.1 <a@b>: Recipient address rejected: …; from=<…> to=<…> proto=ESMTP helo=<…>
//	postfix/smtpd:      NOQUEUE: milter-reject: RCPT from name[192.0.2.1]: 550 5.7.1 Command rejected; from=<…> …
//	postfix/cleanup:    4C1A22E01F: milter-reject: END-OF-MESSAGE from name[192.0.2.1]: 5.7.1 Gtube pattern; from=<…> …
//	postfix/postscreen: NOQUEUE: reject: RCPT from [192.0.2.1]:4711: 550 5.7.1 Service unavailable; …
//
// Everything up to the enhanced status code is Postfix's own: the queue
// id, the stage, the client (a verified host name or "unknown", and the
// connection's address or the one a PROXY header gave). What follows — the
// reply text, which quotes the client's address, then from=, to=, helo= —
// mixes in what the client sent and is Rest, opaque. Postfix's other
// rejects ("reject: header Subject: …" from header_checks) put the client's
// text before the client's address; they have no stage in capitals and are
// not read.
type Reject struct {
	QueueID string     // "NOQUEUE" or a queue id
	Milter  bool       // "milter-reject": a milter (rspamd, …) refused
	Stage   string     // "RCPT", "MAIL", "DATA", "END-OF-MESSAGE", "CONNECT", …
	Client  netip.Addr // never one of moat's own addresses
	Code    int        // the reply code; 0 where Postfix writes none (cleanup's milter-reject)
	Status  string     // the enhanced status code ("5.7.1"); "" if none
	Rest    string     // the rest of the line, opaque
}

// RcptRejected is Postfix's text after the recipient of a RCPT it refuses
// for the recipient's sake: "<rcpt>: Recipient address rejected: …".
const RcptRejected = ">: Recipient address rejected: "

// Recipient returns the recipient such a refusal names, as the client wrote
// it: up to the first RcptRejected, so that a client repeating the text
// later cannot hide the recipient it named. ok is false for any other
// refusal.
func (r Reject) Recipient() (rcpt string, ok bool) {
	rest, ok := strings.CutPrefix(r.Rest, "<")
	i := strings.Index(rest, RcptRejected)
	if !ok || i < 0 {
		return "", false
	}
	return rest[:i], true
}

// Permanent reports a 5xx refusal.
func (r Reject) Permanent() bool {
	return r.Code/100 == 5 || r.Code == 0 && strings.HasPrefix(r.Status, "5.")
}

// ParseReject reads the text of a Postfix reject record (Entry.Text). ok is
// false for every other text, and for a reject of one of moat's own
// connections (see ClientAddr).
func ParseReject(text string) (Reject, bool) {
	var r Reject
	qid, rest, ok := strings.Cut(text, ": ")
	if !ok || !isQueueID(qid) {
		return Reject{}, false
	}
	r.QueueID = qid
	switch {
	case strings.HasPrefix(rest, "reject: "):
		rest = rest[len("reject: "):]
	case strings.HasPrefix(rest, "milter-reject: "):
		rest, r.Milter = rest[len("milter-reject: "):], true
	default:
		return Reject{}, false
	}
	stage, rest, ok := strings.Cut(rest, " from ")
	if !ok || !isStage(stage) {
		return Reject{}, false
	}
	r.Stage = stage
	if r.Client, rest, ok = clientField(rest); !ok {
		return Reject{}, false
	}
	if rest, ok = strings.CutPrefix(rest, ": "); !ok {
		return Reject{}, false
	}
	if len(rest) >= 4 && allDigits(rest[:3]) && rest[3] == ' ' && rest[0] >= '2' && rest[0] <= '5' {
		r.Code = int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
		rest = rest[4:]
	}
	r.Status, r.Rest = SplitStatus(rest)
	if r.Code == 0 && r.Status == "" {
		// Neither a reply code nor a status: not a reply Postfix
		// logged.
		return Reject{}, false
	}
	return r, true
}

// ParseClient reads the record Postfix's smtpd writes when a client starts
// a message (its queue file is made), from the text of the line
// (Entry.Text):
//
//	postfix/smtpd: 4C1A22E01F: client=name[192.0.2.1]:4711
//	postfix/smtpd: 4C1A22E01F: client=name[192.0.2.1], sasl_method=PLAIN, sasl_username=…
//
// Every field up to the client's address is Postfix's own. ok is false
// for every other text, and for one of moat's own connections (see
// ClientAddr).
func ParseClient(text string) (queueID string, client netip.Addr, ok bool) {
	qid, rest, ok := strings.Cut(text, ": ")
	if !ok || qid == "NOQUEUE" || !isQueueID(qid) {
		return "", netip.Addr{}, false
	}
	if rest, ok = strings.CutPrefix(rest, "client="); !ok {
		return "", netip.Addr{}, false
	}
	if client, rest, ok = clientField(rest); !ok || rest != "" && !strings.HasPrefix(rest, ", ") {
		return "", netip.Addr{}, false
	}
	return qid, client, true
}

// clientField reads Postfix's "name[addr]" at the start of s, and the
// ":port" Postfix adds on request, and returns what follows.
func clientField(s string) (netip.Addr, string, bool) {
	i := strings.IndexByte(s, '[')
	if i < 0 || !isHostname(s[:i]) {
		return netip.Addr{}, "", false
	}
	s = s[i+1:]
	j := strings.IndexByte(s, ']')
	if j < 0 {
		return netip.Addr{}, "", false
	}
	a, ok := ClientAddr(s[:j])
	if !ok {
		return netip.Addr{}, "", false
	}
	s = s[j+1:]
	if len(s) > 1 && s[0] == ':' && '0' <= s[1] && s[1] <= '9' {
		k := 1
		for k < len(s) && '0' <= s[k] && s[k] <= '9' {
			k++
		}
		s = s[k:]
	}
	return a, s, true
}

// SplitStatus splits the enhanced status code (RFC 3463: class.subject.detail,
// "5.1.1") off the start of a reply text. status is "" when the text does
// not start with one.
func SplitStatus(text string) (status, rest string) {
	end := strings.IndexByte(text, ' ')
	if end < 0 {
		end = len(text)
	}
	s := text[:end]
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) ||
		len(parts[1]) > 3 || len(parts[2]) > 3 || !allDigits(parts[1]) || !allDigits(parts[2]) {
		return "", text
	}
	return s, strings.TrimPrefix(text[end:], " ")
}

// isQueueID accepts NOQUEUE and Postfix's two queue id forms: the short one
// in upper-case hexadecimal, and the long one (enable_long_queue_ids) in
// digits and letters without vowels.
func isQueueID(s string) bool {
	if s == "NOQUEUE" {
		return true
	}
	if len(s) < 5 || len(s) > 32 {
		return false
	}
	hex, long := true, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
		case 'A' <= c && c <= 'F':
			long = long && c != 'A' && c != 'E'
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			hex = false
			long = long && !strings.ContainsRune("aeiouAEIOU", rune(c))
		default:
			return false
		}
	}
	return hex || long
}

func isStage(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('A' <= s[i] && s[i] <= 'Z' || s[i] == '-') {
			return false
		}
	}
	return true
}

// isHostname accepts what Postfix puts before "[addr]": a verified host
// name, "unknown", or nothing (postscreen).
func isHostname(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
