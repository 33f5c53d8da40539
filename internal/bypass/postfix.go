package bypass

import (
	"net/netip"
	"strings"

	"moat/internal/logfollow"
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
// position, never searched: logfollow reads the header, the program, the
// queue id, the record's words and the client as Postfix wrote it, and
// the recipient is read at the one place Postfix puts it, right after the
// reply code. Nothing a client wrote comes before it.

// LogRecord is one of those records.
type LogRecord struct {
	Client netip.Addr
	Rcpt   string // the refused recipient as the client wrote it; "" for a client= record
}

// ParsePostfixLine reads a syslog or maillog_file line. ok is false for
// every line that is not one of the two records, and for lines about
// moat's own connections (logfollow.ClientAddr).
func ParsePostfixLine(line string) (LogRecord, bool) {
	e, ok := logfollow.ParseSyslog(line)
	if !ok || e.Daemon() != "smtpd" || !strings.HasPrefix(e.Program, "postfix") {
		return LogRecord{}, false
	}
	if _, client, ok := logfollow.ParseClient(e.Text); ok {
		return LogRecord{Client: client}, true
	}
	r, ok := logfollow.ParseReject(e.Text)
	if !ok || r.Milter || r.Stage != "RCPT" || r.Code/100 != 4 && r.Code/100 != 5 {
		return LogRecord{}, false
	}
	// "<rcpt>: Recipient address rejected: …", then the client's
	// from=, to= and helo=. The first such text ends the recipient: a
	// client that repeats it later cannot hide a trap it named, and one
	// whose recipient holds it names only itself.
	rcpt, ok := r.Recipient()
	if !ok || rcpt == "" {
		return LogRecord{}, false
	}
	return LogRecord{Client: r.Client, Rcpt: rcpt}, true
}
