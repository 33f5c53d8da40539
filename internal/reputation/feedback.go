package reputation

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
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
// given half-life, so old sins and old merits fade alike.
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
// came before (+0.25). Ham protects a host that has earned it: after four
// ham verdicts a host absorbs one spam verdict and stays white, after ten
// it absorbs two.
func DefaultKarma() KarmaPolicy {
	return KarmaPolicy{SpamWeight: 1, HamWeight: 0.25, HalfLife: 7 * 24 * time.Hour, GreyBelow: 0, BlackBelow: -1.5}
}

// Karma is what moat remembers of a host's verdicts.
type Karma struct {
	Score float64   `json:"score"` // as of At
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

// Add applies a verdict at now.
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
func ParseLine(format, line string) (Feedback, bool) {
	switch format {
	case FormatRspamd:
		return parseRspamd(line)
	case FormatSpamAssassin:
		return parseSpamAssassin(line)
	case FormatPostfix:
		return parsePostfix(line)
	}
	return Feedback{}, false
}

var (
	// rspamd_task_write_log: id: <…>, qid: <…>, ip: 192.0.2.1, from: <…>,
	// (default: T (reject): [1000.00/15.00] [GTUBE(0.00){…}]), len: …
	rspamdIP     = regexp.MustCompile(`[,:] ip: ([0-9A-Fa-f:.]+),`)
	rspamdAction = regexp.MustCompile(`\(default: [A-Z] \(([a-z ]+)\): \[(-?[0-9.]+)/`)
)

// parseRspamd reads rspamd's per-message log line. reject, add header
// and rewrite subject are spam; no action is ham; greylist and soft reject
// say nothing yet (the message comes back).
func parseRspamd(line string) (Feedback, bool) {
	m := rspamdAction.FindStringSubmatch(line)
	ipm := rspamdIP.FindStringSubmatch(line)
	if m == nil || ipm == nil {
		return Feedback{}, false
	}
	ip, err := netip.ParseAddr(ipm[1])
	if err != nil {
		return Feedback{}, false
	}
	var v Verdict
	switch m[1] {
	case "reject", "add header", "rewrite subject", "discard", "quarantine":
		v = Spam
	case "no action":
		v = Ham
	default:
		return Feedback{}, false
	}
	score, _ := strconv.ParseFloat(m[2], 64)
	return Feedback{IP: ip.Unmap(), Verdict: v, Score: score, Source: FormatRspamd}, true
}

var (
	// amavis[…]: (…) Blocked SPAM {DiscardedInbound}, [192.0.2.1]:4711 [198.51.100.7] <a@b> -> <c@d>, …, Hits: 25.1, …
	amavisLine = regexp.MustCompile(`\b(Passed|Blocked) (CLEAN|SPAMMY|SPAM)\b(?: \{[^}]*\})?,(?: [A-Z/]+)* \[([0-9A-Fa-f:.]+)\]`)
	amavisHits = regexp.MustCompile(`\bHits: (-?[0-9.]+)`)
	// spamd[…]: spamd: result: Y 15 - GTUBE,… ; its client is spamc, so
	// only lines that also name a client host in brackets are used.
	spamdLine = regexp.MustCompile(`spamd: result: ([Y.]) (-?[0-9.]+) `)
	bracketIP = regexp.MustCompile(`\[([0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*)\]`)
)

// parseSpamAssassin reads amavis result lines (the client host is the
// first bracketed address) and spamd result lines that name a client host.
func parseSpamAssassin(line string) (Feedback, bool) {
	if m := amavisLine.FindStringSubmatch(line); m != nil {
		ip, err := netip.ParseAddr(m[3])
		if err != nil {
			return Feedback{}, false
		}
		v := Spam
		if m[2] == "CLEAN" {
			v = Ham
		}
		fb := Feedback{IP: ip.Unmap(), Verdict: v, Source: FormatSpamAssassin}
		if h := amavisHits.FindStringSubmatch(line); h != nil {
			fb.Score, _ = strconv.ParseFloat(h[1], 64)
		}
		return fb, true
	}
	if m := spamdLine.FindStringSubmatch(line); m != nil {
		b := bracketIP.FindStringSubmatch(line)
		if b == nil {
			return Feedback{}, false
		}
		ip, err := netip.ParseAddr(b[1])
		if err != nil {
			return Feedback{}, false
		}
		v := Ham
		if m[1] == "Y" {
			v = Spam
		}
		score, _ := strconv.ParseFloat(m[2], 64)
		return Feedback{IP: ip.Unmap(), Verdict: v, Score: score, Source: FormatSpamAssassin}, true
	}
	return Feedback{}, false
}

// postfix/smtpd[…]: NOQUEUE: reject: RCPT from h[192.0.2.1]: 554 5.7.1 …
// postfix/cleanup[…]: ABC: milter-reject: END-OF-MESSAGE from h[192.0.2.1]: 5.7.1 Gtube pattern; …
var postfixReject = regexp.MustCompile(`\b(?:milter-)?reject: [A-Z-]+ from [^\[\s]*\[([0-9A-Fa-f:.]+)\](?::\d+)?: (5\d\d |5\.\d{1,3}\.\d{1,3}\b)`)

// parsePostfix reads permanent rejections of a client by the backend's
// own restrictions and milters as spam. Unknown recipients (5.1.1) are not
// counted: a legitimate sender meets them too, and they are the traps'
// evidence. Temporary rejections say nothing yet.
func parsePostfix(line string) (Feedback, bool) {
	m := postfixReject.FindStringSubmatch(line)
	if m == nil {
		return Feedback{}, false
	}
	rest := line[strings.Index(line, m[0])+len(m[0]):]
	if strings.Contains(m[2], "5.1.1") || strings.HasPrefix(rest, "5.1.1 ") || strings.Contains(rest, "User unknown") {
		return Feedback{}, false
	}
	ip, err := netip.ParseAddr(m[1])
	if err != nil {
		return Feedback{}, false
	}
	return Feedback{IP: ip.Unmap(), Verdict: Spam, Source: FormatPostfix}, true
}
