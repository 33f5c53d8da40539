package bypass

import (
	"net/netip"
	"strings"
)

// Evidence about white hosts, which moat no longer sees, comes from the
// mail server's log. Postfix's smtpd writes two records that matter here:
//
//	… postfix/smtpd[1207]: NOQUEUE: reject: RCPT from name[192.0.2.1]:4711: 550 5.1.1 <trap@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<…> to=<…> proto=ESMTP helo=<…>
//	… postfix/smtpd[1207]: 4C1A22E01F: client=name[192.0.2.1]:4711
//
// The first says a client named a recipient the server refused — a trap
// is never a mailbox, so a trap named to a white host's server is refused
// and logged so; the second that a client is sending a message, which
// keeps a white host's entry (and its element) alive as a session through
// moat would.
//
// A line mixes Postfix's fields with what the client sent (the reply text
// quotes the recipient; from=, to= and helo= follow), so it is read by
// position, never searched: the header, the program, the queue id, the
// record's words, the client as Postfix wrote it (a host name that Postfix
// verified, or "unknown", then the address in brackets), the reply code,
// and the recipient at the one place Postfix puts it. Nothing a client
// wrote can move any of these: the first client field comes after them.

// LogRecord is one of those records.
type LogRecord struct {
	Client netip.Addr
	Rcpt   string // the refused recipient as the client wrote it; "" for a client= record
}

// ParsePostfixLine reads a syslog or maillog_file line. ok is false for
// every line that is not one of the two records.
func ParsePostfixLine(line string) (LogRecord, bool) {
	text, ok := smtpdText(line)
	if !ok {
		return LogRecord{}, false
	}
	qid, rest, ok := strings.Cut(text, ": ")
	if !ok || !isQueueID(qid) {
		return LogRecord{}, false
	}
	if c, ok := strings.CutPrefix(rest, "client="); ok {
		if qid == "NOQUEUE" {
			return LogRecord{}, false
		}
		// "name[addr]", then ":port" when Postfix logs ports, then
		// ", sasl_method=…" or ", orig_client=…" — Postfix's.
		a, _, ok := clientField(c)
		if !ok {
			return LogRecord{}, false
		}
		return LogRecord{Client: a}, true
	}
	rest, ok = strings.CutPrefix(rest, "reject: RCPT from ")
	if !ok {
		return LogRecord{}, false
	}
	a, rest, ok := clientField(rest)
	if !ok {
		return LogRecord{}, false
	}
	if rest, ok = strings.CutPrefix(rest, ": "); !ok {
		return LogRecord{}, false
	}
	// "550 5.1.1 " or "450 4.1.1 ": a refusal, with its enhanced code.
	code, rest, ok := strings.Cut(rest, " ")
	if !ok || len(code) != 3 || (code[0] != '4' && code[0] != '5') || !digits(code) {
		return LogRecord{}, false
	}
	if status, after, ok := strings.Cut(rest, " "); ok && isStatus(status) {
		rest = after
	}
	// "<rcpt>: Recipient address rejected: …". A recipient holding
	// ">: " is no trap address, and is then not read at all.
	rest, ok = strings.CutPrefix(rest, "<")
	if !ok {
		return LogRecord{}, false
	}
	rcpt, rest, ok := strings.Cut(rest, ">: ")
	if !ok || rcpt == "" || !strings.HasPrefix(rest, "Recipient address rejected: ") {
		return LogRecord{}, false
	}
	return LogRecord{Client: a, Rcpt: rcpt}, true
}

// smtpdText returns what an smtpd process wrote, after its tag: the
// header is a timestamp (RFC 3164 "Mar  3 06:25:02" or RFC 3339), the
// host name, then "postfix/smtpd[pid]: " (or another Postfix instance's or
// service's name ending in "/smtpd").
func smtpdText(line string) (string, bool) {
	rest, ok := cutTimestamp(line)
	if !ok {
		return "", false
	}
	_, rest, ok = strings.Cut(rest, " ") // the host name
	if !ok {
		return "", false
	}
	tag, rest, ok := strings.Cut(rest, ": ")
	if !ok {
		return "", false
	}
	prog, pid, ok := strings.Cut(tag, "[")
	if !ok || !strings.HasSuffix(pid, "]") || !digits(pid[:len(pid)-1]) {
		return "", false
	}
	if !strings.HasPrefix(prog, "postfix") || !strings.HasSuffix(prog, "/smtpd") || strings.ContainsAny(prog, " []") {
		return "", false
	}
	return rest, true
}

func cutTimestamp(line string) (string, bool) {
	if len(line) > 4 && digits(line[:4]) && line[4] == '-' {
		ts, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.Contains(ts, "T") {
			return "", false
		}
		return rest, true
	}
	// "Mmm dd hh:mm:ss " with the day space-padded, zero-padded or alone.
	if len(line) < 16 || line[3] != ' ' || !strings.Contains("JanFebMarAprMayJunJulAugSepOctNovDec", line[:3]) {
		return "", false
	}
	rest := strings.TrimPrefix(line[4:], " ")
	day, rest, ok := strings.Cut(rest, " ")
	if !ok || len(day) < 1 || len(day) > 2 || !digits(day) {
		return "", false
	}
	clock, rest, ok := strings.Cut(rest, " ")
	if !ok || len(clock) != 8 || clock[2] != ':' || clock[5] != ':' {
		return "", false
	}
	return rest, true
}

// clientField reads Postfix's "name[addr]" and an optional ":port".
func clientField(s string) (netip.Addr, string, bool) {
	name, rest, ok := strings.Cut(s, "[")
	if !ok || !hostname(name) {
		return netip.Addr{}, "", false
	}
	addr, rest, ok := strings.Cut(rest, "]")
	if !ok {
		return netip.Addr{}, "", false
	}
	a, err := netip.ParseAddr(strings.TrimPrefix(addr, "IPv6:"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, "", false
	}
	if len(rest) > 1 && rest[0] == ':' && rest[1] >= '0' && rest[1] <= '9' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		rest = rest[i:]
	}
	return a.Unmap(), rest, true
}

// hostname accepts what Postfix writes before "[addr]": a verified name or
// "unknown".
func hostname(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// isQueueID accepts NOQUEUE, Postfix's short queue ids (upper-case hex)
// and long ones (enable_long_queue_ids: digits and letters).
func isQueueID(s string) bool {
	if s == "NOQUEUE" {
		return true
	}
	if len(s) < 5 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// isStatus accepts an enhanced status code (RFC 3463) of a refusal.
func isStatus(s string) bool {
	parts := strings.Split(s, ".")
	return len(parts) == 3 && (parts[0] == "4" || parts[0] == "5") &&
		len(parts[1]) <= 3 && digits(parts[1]) && len(parts[2]) <= 3 && digits(parts[2])
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
