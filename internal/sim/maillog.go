package sim

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"moat/internal/clock"
	"moat/internal/logfollow"
	"moat/internal/reputation"
	"moat/internal/smtp"
	"moat/internal/store/bolt"
	"moat/internal/traps"
)

// Maillog is what a Postfix mail log says happened at a site's border:
// the client sessions, the messages they queued, and which of those the
// content filters called spam. Every line is read by its fixed fields
// (logfollow, traps, reputation); what a client wrote is never searched.
type Maillog struct {
	Files       []string
	Lines       int
	First, Last time.Time
	Sessions    []*LogSession // in order of time
	// Unknown are the "User unknown" refusals (550 5.1.1) with their
	// time: the evidence trap mining weighs.
	Unknown []unknownRcpt
	// Delivered are the recipients the server took a message for.
	Delivered map[string]bool
}

// LogSession is one client connection in the log.
type LogSession struct {
	At        time.Time
	Client    netip.Addr
	EarlyTalk bool         // postscreen saw it talk before the banner
	Messages  []*LogQueued // the messages it queued
	// Refused are the recipients the server refused in this session:
	// the unknown ones by name, the others (a policy refusal whose
	// recipient Postfix wrote among the client's words) as placeholders
	// under replay.invalid.
	Refused []string
}

// LogQueued is a message the server queued.
type LogQueued struct {
	ID     string
	At     time.Time
	Sender string   // normalised
	Rcpts  []string // normalised, from the delivery records
	Spam   bool     // a filter said so (milter refusal, rspamd by queue id, or a verdict on its host)
	Auth   bool     // the client logged in: a submission, not border traffic
}

// Legit reports a message moat must never lose: queued from a client that
// did not log in, and not called spam.
func (q *LogQueued) Legit() bool { return !q.Auth && !q.Spam }

type unknownRcpt struct {
	at time.Time
	traps.Observation
}

// spamNear is how long before a filter's verdict on a host, given
// without a queue id, a message of that host counts as the one judged.
const spamNear = 10 * time.Minute

// pregreetNear is how soon after postscreen's PREGREET an smtpd connect
// of the same client is the same connection, handed over.
const pregreetNear = time.Minute

// ReadMaillog reads Postfix log files (gzip-compressed when the name ends
// in .gz), in any order: their lines are put in time order. A time stamp
// without a year is taken in the year of the file's modification time,
// or the year before for a stamp that would be later than it.
func ReadMaillog(paths []string) (*Maillog, error) {
	ml := &Maillog{Files: paths, Delivered: map[string]bool{}}
	var lines []stamped
	matcher, _ := traps.NewLineMatcher("")
	for _, p := range paths {
		n, err := readLog(p, func(t time.Time, line string) { lines = append(lines, stamped{t, line}) })
		ml.Lines += n
		if err != nil {
			return nil, err
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	b := &logBuilder{ml: ml, queue: map[string]*LogQueued{}, open: map[netip.Addr][]*LogSession{},
		greet: map[netip.Addr]time.Time{}, spamHosts: map[netip.Addr][]time.Time{}, matcher: matcher}
	for _, l := range lines {
		b.line(l.at, l.line)
	}
	b.finish()
	return ml, nil
}

type stamped struct {
	at   time.Time
	line string
}

// readLog calls fn for every line of path that has a time stamp.
func readLog(path string, fn func(time.Time, string)) (int, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	mod := fi.ModTime()
	return logfollow.ReadFile(path, func(line string) {
		t, ok := logfollow.ParseTime(line, mod.Year(), time.Local)
		if !ok {
			return
		}
		if t.After(mod.Add(24 * time.Hour)) {
			// December's lines in a file written in January.
			t = t.AddDate(-1, 0, 0)
		}
		fn(t, line)
	})
}

// logBuilder puts the records of a log together into sessions.
type logBuilder struct {
	ml        *Maillog
	queue     map[string]*LogQueued
	open      map[netip.Addr][]*LogSession // connected, not yet disconnected
	greet     map[netip.Addr]time.Time     // PREGREET not yet matched to a connect
	spamHosts map[netip.Addr][]time.Time   // verdicts without a queue id
	matcher   *traps.LineMatcher
	refused   int
}

func (b *logBuilder) line(at time.Time, line string) {
	ml := b.ml
	if ml.First.IsZero() {
		ml.First = at
	}
	ml.Last = at
	e, ok := logfollow.ParseSyslog(line)
	if !ok {
		// rspamd's own log file has no syslog header.
		b.feedback(at, line)
		return
	}
	if r, ok := logfollow.ParseRecord(e); ok {
		b.record(at, r)
		return
	}
	if o, ok := b.matcher.Match(line); ok {
		ml.Unknown = append(ml.Unknown, unknownRcpt{at, o})
		b.session(at, o.Client).Refused = append(b.session(at, o.Client).Refused, o.Addr)
		return
	}
	switch e.Daemon() {
	case "smtpd", "postscreen", "cleanup":
		if r, ok := logfollow.ParseReject(e.Text); ok {
			b.reject(at, r)
			return
		}
	}
	b.feedback(at, line)
}

func (b *logBuilder) record(at time.Time, r logfollow.Record) {
	switch r.Kind {
	case logfollow.Pregreet:
		b.greet[r.Client] = at
	case logfollow.Connect:
		b.begin(at, r.Client)
	case logfollow.Disconnect:
		if l := b.open[r.Client]; len(l) > 0 {
			b.open[r.Client] = l[1:]
		}
	case logfollow.Queued:
		q := &LogQueued{ID: r.QueueID, At: at, Auth: r.Auth}
		b.queue[r.QueueID] = q
		s := b.session(at, r.Client)
		s.Messages = append(s.Messages, q)
	case logfollow.Sender:
		if q, ok := b.queue[r.QueueID]; ok {
			q.Sender, _ = normalised(r.Addr)
		}
	case logfollow.Delivery:
		q, ok := b.queue[r.QueueID]
		a, aok := normalised(r.Addr)
		if ok && aok && a != "" && !slices.Contains(q.Rcpts, a) {
			q.Rcpts = append(q.Rcpts, a)
			b.ml.Delivered[a] = true
		}
	}
}

// session is the open session of client, or a new one when the log does
// not show its connect (it began before the log, or postscreen alone
// spoke with it).
func (b *logBuilder) session(at time.Time, client netip.Addr) *LogSession {
	if l := b.open[client]; len(l) > 0 {
		return l[len(l)-1]
	}
	return b.begin(at, client)
}

// begin opens a session of client at at: an early talker when the log
// showed it talking before the banner just before.
func (b *logBuilder) begin(at time.Time, client netip.Addr) *LogSession {
	s := &LogSession{At: at, Client: client}
	if g, ok := b.greet[client]; ok && at.Sub(g) <= pregreetNear {
		s.EarlyTalk = true
		delete(b.greet, client)
	}
	b.open[client] = append(b.open[client], s)
	b.ml.Sessions = append(b.ml.Sessions, s)
	return s
}

func (b *logBuilder) reject(at time.Time, r logfollow.Reject) {
	if r.Milter && r.QueueID != "NOQUEUE" {
		if q, ok := b.queue[r.QueueID]; ok && r.Permanent() {
			q.Spam = true
		}
		return
	}
	if r.QueueID == "NOQUEUE" && r.Stage == "RCPT" {
		// A recipient the client named; which one is in the client's
		// words after the reply: moat plays a placeholder.
		b.refused++
		s := b.session(at, r.Client)
		s.Refused = append(s.Refused, fmt.Sprintf("refused%d@replay.invalid", b.refused))
	}
}

// feedback reads a content filter's verdict.
func (b *logBuilder) feedback(at time.Time, line string) {
	for _, f := range []string{reputation.FormatRspamd, reputation.FormatSpamAssassin} {
		fb, ok := reputation.ParseLine(f, line)
		if !ok {
			continue
		}
		if q, ok := b.queue[fb.QueueID]; ok && fb.QueueID != "" {
			q.Spam = fb.Verdict == reputation.Spam
			return
		}
		if fb.Verdict == reputation.Spam {
			b.spamHosts[fb.IP] = append(b.spamHosts[fb.IP], at)
		}
		return
	}
}

// finish adds the early talkers postscreen kept to itself, and marks the
// messages of hosts a filter called spam without naming the message.
func (b *logBuilder) finish() {
	ml := b.ml
	for client, at := range b.greet {
		ml.Sessions = append(ml.Sessions, &LogSession{At: at, Client: client, EarlyTalk: true})
	}
	sort.SliceStable(ml.Sessions, func(i, j int) bool { return ml.Sessions[i].At.Before(ml.Sessions[j].At) })
	for _, s := range ml.Sessions {
		for _, q := range s.Messages {
			for _, t := range b.spamHosts[s.Client] {
				if !t.Before(q.At) && t.Sub(q.At) <= spamNear {
					q.Spam = true
				}
			}
		}
	}
}

// normalised is an address from a log as moat's dialog would have it; ok
// is false for one that needs quoting.
func normalised(a string) (string, bool) {
	if a == "" {
		return "", true
	}
	n, err := smtp.Normalize(a)
	if err != nil || strings.ContainsAny(n, "\" ") {
		return "", false
	}
	return n, true
}

// Counts returns the sessions, distinct client hosts, legitimate and spam
// messages of the log.
func (ml *Maillog) Counts() (sessions, hosts, legit, spam int) {
	seen := map[netip.Addr]bool{}
	for _, s := range ml.Sessions {
		if border(s) {
			sessions++
			seen[s.Client] = true
		}
		for _, q := range s.Messages {
			switch {
			case q.Auth:
			case q.Spam:
				spam++
			default:
				legit++
			}
		}
	}
	return sessions, len(seen), legit, spam
}

// border reports a session that came to the MX as a stranger would: not
// one whose every message was a logged-in submission.
func border(s *LogSession) bool {
	if len(s.Messages) == 0 {
		return true
	}
	for _, q := range s.Messages {
		if !q.Auth {
			return true
		}
	}
	return false
}

// Candidates are the trap candidates of the log: addresses that several
// hosts asked for and that the server refused as unknown and never took
// a message for, as moat's trap miner counts them (traps.min_hosts of the
// policy, its traps and domains).
func (ml *Maillog) Candidates(p Policy) ([]traps.Evidence, error) {
	clk := clock.NewFake(ml.First)
	st := bolt.Memory(bolt.Options{Clock: clk})
	defer st.Close()
	set, err := traps.New(st, p.Config.Traps.Addresses)
	if err != nil {
		return nil, err
	}
	m, err := traps.NewMiner(traps.MinerConfig{MinHosts: p.Config.Traps.MinHosts, Auto: traps.AutoSuggest,
		Domains: p.Config.Traps.Domains, Clock: clk}, st, set)
	if err != nil {
		return nil, err
	}
	for a := range ml.Delivered {
		m.Accepted(a)
	}
	for _, u := range ml.Unknown {
		clk.Set(u.at)
		// The server's own refusal, as the miner hears it during a
		// hand-off: it also tells which domains are the server's.
		m.Targeted(u.Client, u.Addr, traps.OriginBackend)
	}
	return m.Candidates()
}
