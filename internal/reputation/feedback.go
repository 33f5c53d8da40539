package reputation

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"moat/internal/logfollow"
)

// Verdict is what a content filter said of one message.
type Verdict string

const (
	Spam Verdict = "spam"
	Ham  Verdict = "ham"
)

// ParseVerdict accepts "spam" and "ham".
func ParseVerdict(s string) (Verdict, error) {
	switch v := Verdict(strings.ToLower(strings.TrimSpace(s))); v {
	case Spam, Ham:
		return v, nil
	}
	return "", fmt.Errorf("verdict %q: want \"spam\" or \"ham\"", s)
}

// Feedback is one verdict about one client host, from the API or a log.
type Feedback struct {
	IP      netip.Addr
	Verdict Verdict
	Score   float64 // the filter's own score, for the record; 0 if unknown
	Source  string  // "rspamd", "spamassassin", "postfix", "api:…"
	// QueueID is the mail server's queue id of the message, where the
	// filter writes it among its own fields (rspamd's qid); "" if not.
	QueueID string
}

func (f Feedback) String() string {
	s := string(f.Verdict) + " from " + f.Source
	if f.Score != 0 {
		s += " (score " + strconv.FormatFloat(f.Score, 'f', -1, 64) + ")"
	}
	return s
}

// KarmaPolicy weighs verdicts. Karma starts at 0; spam subtracts
// SpamWeight, ham adds HamWeight, and the sum decays towards 0 with the
// given half-life, so old sins and old merits fade alike. The sum stays
// within Range.
type KarmaPolicy struct {
	SpamWeight float64       // default 1
	HamWeight  float64       // default 0.25
	HalfLife   time.Duration // default 7 days
	GreyBelow  float64       // a white host whose karma falls below this is grey again (default 0)
	BlackBelow float64       // a host whose karma falls below this is black (default -1.5)
}

// DefaultKarma is the policy when nothing is configured: the first spam
// verdict costs a white host its whitelisting (karma -1 < 0) and a second
// one within days makes it black (about -2 < -1.5), even if one ham verdict
// came before (+0.25). Ham protects a host that has earned it, within
// bounds: after four ham verdicts a host absorbs one spam verdict and
// stays white; no number of ham verdicts absorbs two (see Range).
func DefaultKarma() KarmaPolicy {
	return KarmaPolicy{SpamWeight: 1, HamWeight: 0.25, HalfLife: 7 * 24 * time.Hour, GreyBelow: 0, BlackBelow: -1.5}
}

// Range is the interval karma is kept in: [BlackBelow - 2*SpamWeight,
// GreyBelow + SpamWeight], [-3.5, 1] with the defaults.
//
// The top means that ham cushions one spam verdict and never more: a host
// whose mail was clean for a year and that starts spamming loses its
// whitelisting at the second verdict, as filters' verdicts are cheap to
// earn (a sender that passes the greylist once can send clean messages in
// bulk). The bottom means that a host that stopped spamming fades back
// above BlackBelow within about a half-life and a quarter, however much it
// sent before.
func (p KarmaPolicy) Range() (lo, hi float64) {
	return p.BlackBelow - 2*p.SpamWeight, p.GreyBelow + p.SpamWeight
}

// Karma is what moat remembers of a host's verdicts.
type Karma struct {
	Score float64   `json:"score"` // as of At, within the policy's Range
	At    time.Time `json:"at"`
	Spam  int       `json:"spam"` // verdicts ever counted
	Ham   int       `json:"ham"`
}

// Faded is the karma below which (in magnitude) a decayed karma counts as
// 0: exponential decay never reaches 0, and a host should not carry one
// spam verdict of last year for ever (five half-lives bring -1 below it).
const Faded = 0.05

// Now returns the karma decayed to now.
func (k Karma) Now(now time.Time, halfLife time.Duration) float64 {
	if k.At.IsZero() || halfLife <= 0 || !now.After(k.At) {
		return k.Score
	}
	v := k.Score * math.Exp2(-float64(now.Sub(k.At))/float64(halfLife))
	if math.Abs(v) < Faded {
		return 0
	}
	return v
}

// Add applies a verdict at now, keeping the karma within Range.
func (p KarmaPolicy) Add(k Karma, v Verdict, now time.Time) Karma {
	k.Score = k.Now(now, p.HalfLife)
	k.At = now
	switch v {
	case Spam:
		k.Score -= p.SpamWeight
		k.Spam++
	case Ham:
		k.Score += p.HamWeight
		k.Ham++
	}
	lo, hi := p.Range()
	k.Score = min(max(k.Score, lo), hi)
	return k
}

// Marshal encodes k for the store.
func (k Karma) Marshal() []byte {
	b, _ := json.Marshal(k)
	return b
}

// UnmarshalKarma decodes a stored Karma.
func UnmarshalKarma(b []byte) (Karma, error) {
	var k Karma
	err := json.Unmarshal(b, &k)
	return k, err
}

// Log formats the followers understand.
const (
	FormatRspamd       = "rspamd"
	FormatSpamAssassin = "spamassassin"
	FormatPostfix      = "postfix"
)

// ParseLine reads one log line of the given format. ok is false for lines
// that carry no verdict about a client host.
//
// Every parser reads the fields its program writes before the first field
// a client controls, by position, and takes the client's address only from
// a field the program filled from the connection (logfollow.ClientAddr,
// which also refuses moat's own addresses). What a client wrote — a
// Message-ID, a HELO name, an envelope address, a subject — can hold any
// other format's words; it is never searched for them.
func ParseLine(format, line string) (Feedback, bool) {
	switch format {
	case FormatRspamd:
		return parseRspamd(line)
	case FormatSpamAssassin:
		return parseAmavis(line)
	case FormatPostfix:
		return parsePostfix(line)
	}
	return Feedback{}, false
}

// rspamd writes one line per message (rspamd_task_write_log), to its own
// file or to syslog. With its default log_format:
//
//	2026-11-23 10:20:36 #2642(rspamd_proxy) <27ed63>; proxy; rspamd_task_write_log: id: <MID>, qid: <QID>, ip: 192.0.2.1,
//	  [user: U,] from: <FROM>, (default: T (reject): [16.00/15.00] [SYMBOLS]), len: 185, time: …, digest: <…>, rcpts: <…>, …
//
// id is the client's Message-ID; rspamd writes a space in it as "?", so the
// first space after "id: <" ends it, and qid and ip follow. The action
// comes after from, which rspamd writes as the client sent it, spaces
// included: a sender can write "(default: F (no action)…" there. A line in
// which the action's opening "(default: " or the field " ip: " appears more
// than once is therefore ambiguous, and says nothing.
func parseRspamd(line string) (Feedback, bool) {
	text, ok := rspamdTaskLog(line)
	if !ok || strings.Count(text, "(default: ") != 1 || strings.Count(text, " ip: ") != 1 {
		return Feedback{}, false
	}
	mid, ok := strings.CutPrefix(text, "id: <")
	if !ok {
		return Feedback{}, false
	}
	mid, rest, ok := strings.Cut(mid, " ")
	if !ok || !strings.HasSuffix(mid, ">,") {
		return Feedback{}, false
	}
	var qid string
	if q, ok := strings.CutPrefix(rest, "qid: <"); ok {
		var after string
		qid, after, ok = strings.Cut(q, ">, ")
		if !ok || strings.ContainsAny(qid, " <>") {
			return Feedback{}, false
		}
		rest = after
	}
	ipText, ok := strings.CutPrefix(rest, "ip: ")
	if !ok {
		return Feedback{}, false
	}
	ipText, _, ok = strings.Cut(ipText, ", ")
	if !ok {
		return Feedback{}, false
	}
	ip, ok := logfollow.ClientAddr(ipText)
	if !ok {
		return Feedback{}, false
	}
	_, act, _ := strings.Cut(rest, "(default: ")
	// "T (reject): [16.00/15.00] [": the spam flag, the action, the
	// score and the required score.
	if len(act) < 3 || !strings.ContainsRune("TFS", rune(act[0])) || act[1:3] != " (" {
		return Feedback{}, false
	}
	action, scores, ok := strings.Cut(act[3:], "): [")
	if !ok {
		return Feedback{}, false
	}
	var v Verdict
	switch action {
	case "reject", "add header", "rewrite subject", "discard", "quarantine":
		v = Spam
	case "no action":
		v = Ham
	default:
		// greylist and soft reject say nothing yet: the message
		// comes back.
		return Feedback{}, false
	}
	score, _, _ := strings.Cut(scores, "/")
	sc, _ := strconv.ParseFloat(score, 64)
	return Feedback{IP: ip, Verdict: v, Score: sc, Source: FormatRspamd, QueueID: qid}, true
}

// rspamdTaskLog returns what follows "rspamd_task_write_log: " in a line
// of rspamd's own log file or of syslog.
func rspamdTaskLog(line string) (string, bool) {
	var rest string
	if e, ok := logfollow.ParseSyslog(line); ok {
		if e.Program != "rspamd" {
			return "", false
		}
		rest = e.Text
	} else {
		// "2026-11-23 10:20:36 #2642(rspamd_proxy) ", the time
		// possibly with a fraction.
		date, r, ok := strings.Cut(line, " ")
		if !ok || len(date) != 10 || date[4] != '-' || date[7] != '-' {
			return "", false
		}
		clock, r, ok := strings.Cut(r, " ")
		if !ok || len(clock) < 8 || clock[2] != ':' || clock[5] != ':' {
			return "", false
		}
		proc, r, ok := strings.Cut(r, " ")
		if !ok || !strings.HasPrefix(proc, "#") || !strings.HasSuffix(proc, ")") {
			return "", false
		}
		rest = r
	}
	// "<27ed63>; proxy; rspamd_task_write_log: "
	uid, rest, ok := strings.Cut(rest, "; ")
	if !ok || !strings.HasPrefix(uid, "<") || !strings.HasSuffix(uid, ">") {
		return "", false
	}
	module, rest, ok := strings.Cut(rest, "; ")
	if !ok || strings.ContainsAny(module, " <>") {
		return "", false
	}
	return strings.CutPrefix(rest, "rspamd_task_write_log: ")
}

// amavis (amavisd-new with SpamAssassin) writes one line per message:
//
//	amavis[1234]: (01234-05) Blocked SPAM {DiscardedInbound}, [192.0.2.1]:4711 [198.51.100.7] <from> -> <to>, Queue-ID: …, Message-ID: <…>, …, Hits: 25.1, …
//
// Up to the client's address everything is amavis's own: the log id, the
// verdict, the action in braces, the operator's policy bank names. The
// client is the first bracketed address, and it is followed by its port;
// the second one is amavis's guess of the originating host from the
// Received headers, which a client writes, and is never taken. The score
// comes after the sender and is not read.
func parseAmavis(line string) (Feedback, bool) {
	e, ok := logfollow.ParseSyslog(line)
	if !ok || !strings.HasPrefix(e.Program, "amavis") {
		return Feedback{}, false
	}
	id, rest, ok := strings.Cut(e.Text, " ")
	if !ok || !strings.HasPrefix(id, "(") || !strings.HasSuffix(id, ")") {
		return Feedback{}, false
	}
	action, rest, ok := strings.Cut(rest, " ")
	if !ok || action != "Passed" && action != "Blocked" {
		return Feedback{}, false
	}
	i := strings.IndexAny(rest, " ,")
	if i < 0 {
		return Feedback{}, false
	}
	var v Verdict
	switch rest[:i] {
	case "CLEAN":
		v = Ham
	case "SPAM", "SPAMMY":
		v = Spam
	default:
		// INFECTED (name), BANNED (file name), BAD-HEADER…: not a
		// spam verdict, and the parentheses hold what the client
		// sent.
		return Feedback{}, false
	}
	rest = rest[i:]
	if b, ok := strings.CutPrefix(rest, " {"); ok {
		j := strings.IndexByte(b, '}')
		if j < 0 || strings.ContainsAny(b[:j], " []") {
			return Feedback{}, false
		}
		rest = b[j+1:]
	}
	rest, ok = strings.CutPrefix(rest, ", ")
	if !ok {
		return Feedback{}, false
	}
	// Policy bank names and LOCAL, then "[addr]:port ".
	for !strings.HasPrefix(rest, "[") {
		tok, r, ok := strings.Cut(rest, " ")
		if !ok || tok == "" || strings.ContainsAny(tok, "[]<>,") {
			return Feedback{}, false
		}
		rest = r
	}
	addr, rest, ok := strings.Cut(rest[1:], "]:")
	if !ok || len(rest) == 0 || rest[0] < '0' || rest[0] > '9' {
		return Feedback{}, false
	}
	ip, ok := logfollow.ClientAddr(addr)
	if !ok {
		return Feedback{}, false
	}
	return Feedback{IP: ip, Verdict: v, Source: FormatSpamAssassin}, true
}

// parsePostfix reads Postfix's permanent policy and content refusals of a
// client (enhanced status 5.7.x: its own restrictions, a DNS list, a
// milter's verdict) as spam. Refusals about the mailbox (5.1.x no such
// user, 5.2.x mailbox full, 5.3.x mail system) are not: a legitimate
// sender meets them too, and unknown users are the traps' evidence.
// Temporary refusals say nothing yet.
func parsePostfix(line string) (Feedback, bool) {
	e, ok := logfollow.ParseSyslog(line)
	if !ok {
		return Feedback{}, false
	}
	switch e.Daemon() {
	case "smtpd", "cleanup", "postscreen":
	default:
		return Feedback{}, false
	}
	r, ok := logfollow.ParseReject(e.Text)
	if !ok || !r.Permanent() || !strings.HasPrefix(r.Status, "5.7.") {
		return Feedback{}, false
	}
	return Feedback{IP: r.Client, Verdict: Spam, Source: FormatPostfix}, true
}
