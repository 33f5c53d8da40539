package logfollow

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// RecordKind says which Postfix record a Record is.
type RecordKind uint8

const (
	Connect    RecordKind = iota + 1 // smtpd: connect from name[addr]
	Disconnect                       // smtpd: disconnect from name[addr] …
	Queued                           // smtpd: QID: client=name[addr]: a message entered the queue
	Sender                           // qmgr: QID: from=<addr>, size=…, nrcpt=… (queue active)
	Delivery                         // local, virtual, lmtp, pipe, smtp, …: QID: to=<addr>, …, status=…
	Pregreet                         // postscreen: PREGREET n after t from [addr]:port: …
)

// Record is one of the Postfix records that trace a client session and
// the messages it queued, read by their fixed fields:
//
//	postfix/smtpd:      connect from mail.example[192.0.2.1]
//	postfix/smtpd:      4C1A22E01F: client=mail.example[192.0.2.1]
//	postfix/qmgr:       4C1A22E01F: from=<a@example.org>, size=1234, nrcpt=1 (queue active)
//	postfix/lmtp:       4C1A22E01F: to=<b@example.net>, relay=…, delay=0.2, delays=…, dsn=2.0.0, status=sent (…)
//	postfix/smtpd:      disconnect from mail.example[192.0.2.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5
//	postfix/postscreen: PREGREET 11 after 0.08 from [192.0.2.1]:4711: EHLO …
//
// An envelope address is the client's text between Postfix's "<" and the
// first ">, " after it: an address that holds ">, " itself, or any space
// or quote, cannot be told from the fields after it and the record is not
// read. The text after the fields named here (a reply in parentheses, a
// pregreet's bytes) is the client's or a remote server's and is never
// looked into.
type Record struct {
	Kind    RecordKind
	QueueID string
	Client  netip.Addr // Connect, Disconnect, Queued, Pregreet
	Addr    string     // Sender ("" for the null sender), Delivery: as Postfix wrote it
	Status  string     // Delivery: sent, deferred, bounced, expired, …
	Auth    bool       // Queued: the client logged in (SASL): a submission, not MX traffic
}

// ParseRecord reads e as one of the records above; ok is false for every
// other line.
func ParseRecord(e Entry) (Record, bool) {
	switch e.Daemon() {
	case "smtpd":
		return smtpdRecord(e.Text)
	case "qmgr":
		return senderRecord(e.Text)
	case "postscreen":
		return pregreetRecord(e.Text)
	case "local", "virtual", "lmtp", "pipe", "smtp", "relay", "error", "discard", "retry":
		return deliveryRecord(e.Text)
	}
	return Record{}, false
}

func smtpdRecord(text string) (Record, bool) {
	if rest, ok := strings.CutPrefix(text, "connect from "); ok {
		if a, rest, ok := clientField(rest); ok && rest == "" {
			return Record{Kind: Connect, Client: a}, true
		}
		return Record{}, false
	}
	if rest, ok := strings.CutPrefix(text, "disconnect from "); ok {
		if a, rest, ok := clientField(rest); ok && (rest == "" || rest[0] == ' ') {
			return Record{Kind: Disconnect, Client: a}, true
		}
		return Record{}, false
	}
	qid, a, ok := ParseClient(text)
	if !ok {
		return Record{}, false
	}
	// After the client come Postfix's own fields; the login name, the one
	// thing a client chose, comes after "sasl_username=".
	return Record{Kind: Queued, QueueID: qid, Client: a, Auth: strings.Contains(text, ", sasl_username=")}, true
}

func senderRecord(text string) (Record, bool) {
	qid, rest, ok := strings.Cut(text, ": from=<")
	if !ok || !isQueueID(qid) {
		return Record{}, false
	}
	addr, rest, ok := cutAddr(rest)
	if !ok || !strings.HasPrefix(rest, "size=") || !strings.HasSuffix(rest, "(queue active)") {
		return Record{}, false
	}
	return Record{Kind: Sender, QueueID: qid, Addr: addr}, true
}

func deliveryRecord(text string) (Record, bool) {
	qid, rest, ok := strings.Cut(text, ": to=<")
	if !ok || !isQueueID(qid) {
		return Record{}, false
	}
	addr, rest, ok := cutAddr(rest)
	if !ok {
		return Record{}, false
	}
	if o, ok := strings.CutPrefix(rest, "orig_to=<"); ok {
		if _, rest, ok = cutAddr(o); !ok {
			return Record{}, false
		}
	}
	// Postfix's own fields, "key=value, " each, up to status=.
	for {
		field, after, ok := strings.Cut(rest, ", ")
		if s, isStatus := strings.CutPrefix(rest, "status="); isStatus {
			status, _, _ := strings.Cut(s, " ")
			if status == "" || !isWord(status) {
				return Record{}, false
			}
			return Record{Kind: Delivery, QueueID: qid, Addr: addr, Status: status}, true
		}
		key, _, kv := strings.Cut(field, "=")
		if !ok || !kv || !isWord(key) || strings.ContainsAny(field, " ") {
			return Record{}, false
		}
		rest = after
	}
}

func pregreetRecord(text string) (Record, bool) {
	rest, ok := strings.CutPrefix(text, "PREGREET ")
	if !ok {
		return Record{}, false
	}
	n, rest, ok := strings.Cut(rest, " after ")
	if !ok || !allDigits(n) {
		return Record{}, false
	}
	_, rest, ok = strings.Cut(rest, " from ")
	if !ok {
		return Record{}, false
	}
	a, rest, ok := clientField(rest)
	if !ok || !strings.HasPrefix(rest, ":") {
		return Record{}, false
	}
	return Record{Kind: Pregreet, Client: a}, true
}

// cutAddr reads an envelope address up to the first ">, " and returns the
// rest after it; see Record.
func cutAddr(s string) (addr, rest string, ok bool) {
	addr, rest, ok = strings.Cut(s, ">, ")
	if !ok || strings.ContainsAny(addr, " \"<>\t") {
		return "", "", false
	}
	return addr, rest, true
}

func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return s != ""
}

// ParseTime reads the time stamp of a line that ParseSyslog accepts. A
// stamp without a year (RFC 3164, Postfix's maillog_file) is taken in
// year and loc; the caller knows which year its file covers.
func ParseTime(line string, year int, loc *time.Location) (time.Time, bool) {
	if len(line) > 4 && allDigits(line[:4]) && line[4] == '-' {
		ts, _, _ := strings.Cut(line, " ")
		t, err := time.Parse(time.RFC3339Nano, ts)
		return t, err == nil
	}
	if _, ok := cutTimestamp(line); !ok {
		return time.Time{}, false
	}
	// "Mmm dd hh:mm:ss", the day space-padded, zero-padded or alone.
	f := strings.Fields(line)
	t, err := time.ParseInLocation("Jan 2 15:04:05 2006", f[0]+" "+f[1]+" "+f[2]+" "+strconv.Itoa(year), loc)
	return t, err == nil
}
