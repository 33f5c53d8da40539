package sim

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"moat/internal/clock"
	"moat/internal/daemon"
	"moat/internal/store/bolt"
	"moat/internal/traps"
)

// LogResult is what a policy would have done to the traffic of a mail
// log.
type LogResult struct {
	Policy   string         `json:"policy"`
	Sessions int            `json:"sessions"`
	Verdicts map[string]int `json:"verdicts"` // sessions by their strongest verdict
	// Sessions moat would have greylisted (a recipient deferred, none
	// passed), held in the tarpit, and let through (passed the greylist
	// or spliced).
	Greylisted int `json:"greylisted"`
	Tarpitted  int `json:"tarpitted"`
	Passed     int `json:"passed"`
	// Retries are the connections legitimate senders would have made
	// again after a 4xx, on the model's log_retry schedule.
	Retries  int        `json:"retries"`
	Legit    LegitStats `json:"legit"` // Delayed: would have waited
	Spam     SpamStats  `json:"spam"`
	BotHours float64    `json:"tarpit_bot_hours"`
}

// SpamStats counts the queued messages a filter called spam, and those of
// them moat would still have let through to the server.
type SpamStats struct {
	Messages  int `json:"messages"`
	Delivered int `json:"delivered"`
}

// LogReport is `moat evaluate --log`'s answer.
type LogReport struct {
	Files      []string         `json:"files"`
	Lines      int              `json:"lines"`
	First      time.Time        `json:"first"`
	Last       time.Time        `json:"last"`
	Sessions   int              `json:"sessions"`
	Hosts      int              `json:"hosts"`
	Legit      int              `json:"legit_messages"`
	Spam       int              `json:"spam_messages"`
	Retry      string           `json:"retry"` // the schedule deferred senders are assumed to follow
	Candidates []traps.Evidence `json:"trap_candidates"`
	Results    []*LogResult     `json:"policies"`
}

// Replay plays the log's sessions against every policy: each connection
// as it happened, and for every legitimate message moat would have
// deferred, the retries of its sender on the model's log_retry schedule
// from the same address. Bots are played as they behaved in the log.
func (ml *Maillog) Replay(m *Model, policies []Policy) (*LogReport, error) {
	name := m.LogRetry
	if name == "" {
		name = "rfc5321"
	}
	sender, ok := m.legit(name)
	if !ok {
		return nil, fmt.Errorf("model: log_retry: %q: no [[legit]] of that name", name)
	}
	rep := &LogReport{Files: ml.Files, Lines: ml.Lines, First: ml.First, Last: ml.Last, Retry: name + ": " + sender.Retry}
	rep.Sessions, rep.Hosts, rep.Legit, rep.Spam = ml.Counts()
	for _, p := range policies {
		res, err := ml.replay(m, p, &sender.Schedule)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", p.Name, err)
		}
		rep.Results = append(rep.Results, res)
	}
	if len(policies) > 0 {
		c, err := ml.Candidates(policies[0])
		if err != nil {
			return nil, err
		}
		rep.Candidates = c
	}
	return rep, nil
}

func (ml *Maillog) replay(m *Model, pol Policy, sched *Schedule) (*LogResult, error) {
	clk := clock.NewFake(ml.First)
	st := bolt.Memory(bolt.Options{Clock: clk})
	defer st.Close()
	// The log's site has its own traps: those of the policy.
	pol.Traps = false
	cfg := pol.engineConfig(m)
	eng, err := daemon.NewSimEngine(cfg, st, clk, &spfResolver{})
	if err != nil {
		return nil, err
	}
	p := &Player{Eng: eng, Clock: clk, GreetDelay: cfg.Greylist.GreetDelay.Duration, MaxRcpts: cfg.Limits.MaxRcpts,
		Tarpit: daemon.TarpitConfig(cfg, daemon.NewWords(cfg, false)), Mailbox: func(r string) bool { return ml.Delivered[r] || strings.HasPrefix(r, "rcpt-") }}
	res := &LogResult{Policy: pol.Name, Verdicts: map[string]int{}}
	var retries retryHeap
	n := 0
	for i := 0; i < len(ml.Sessions) || len(retries) > 0; {
		if i < len(ml.Sessions) && (len(retries) == 0 || !retries[0].last.Before(ml.Sessions[i].At)) {
			s := ml.Sessions[i]
			i++
			if !border(s) {
				continue
			}
			clk.Set(s.At)
			res.session(p, s, sched, &retries, &n)
			continue
		}
		msg := heap.Pop(&retries).(*message)
		clk.Set(msg.last)
		res.Retries++
		o := p.Play(Attempt{Client: msg.client, Sender: msg.Sender, Rcpts: msg.pending})
		res.BotHours += o.Held.Hours()
		res.settle(msg, o, sched, &retries)
	}
	res.Legit.finish()
	return res, nil
}

// session plays one connection of the log: a transaction per message it
// queued (the recipients it had refused ride along with the first), or
// one with only the refused recipients.
func (res *LogResult) session(p *Player, s *LogSession, sched *Schedule, retries *retryHeap, n *int) {
	res.Sessions++
	txs := s.Messages
	if len(txs) == 0 {
		txs = []*LogQueued{nil}
	}
	var verdict string
	tarpit := false
	for i, q := range txs {
		// Who sends a refused-only transaction is in the client's
		// words, never read: a sender of its own keeps it from
		// matching another session's triplet.
		*n++
		a := Attempt{Client: s.Client, EarlyTalk: s.EarlyTalk && i == 0, Sender: fmt.Sprintf("sender%d@replay.invalid", *n)}
		var msg *message
		if q != nil && !q.Auth {
			rcpts := q.Rcpts
			if len(rcpts) == 0 {
				rcpts = []string{"rcpt-" + strings.ToLower(q.ID) + "@replay.invalid"}
			}
			// The first attempt is the connection's, not the time
			// the message entered the queue.
			msg = &message{Message: &Message{ID: *n, At: s.At, Kind: Legit, Sender: q.Sender, Rcpts: rcpts},
				pending: rcpts, client: s.Client, last: s.At}
			if q.Spam {
				msg.Kind = Spam
			}
			a.Sender, a.Rcpts = q.Sender, rcpts
		}
		if i == 0 {
			a.Rcpts = append(append([]string(nil), a.Rcpts...), s.Refused...)
		}
		if tarpit {
			// The connection is the tarpit's already: it says 250 to
			// the rest, and nothing is delivered.
			if msg != nil {
				res.settle(msg, Outcome{Faked: msg.pending}, nil, retries)
			}
			continue
		}
		o := p.Play(a)
		res.BotHours += o.Held.Hours()
		if verdict == "" || verdictRank[o.Verdict] > verdictRank[verdict] {
			verdict = o.Verdict
		}
		tarpit = o.Tarpit
		if msg != nil {
			res.settle(msg, o, sched, retries)
		}
	}
	res.Verdicts[verdict]++
	switch verdict {
	case "greylisted", "tempfail":
		res.Greylisted++
	case "tarpit", "early-talker", "trap", "black":
		res.Tarpitted++
	case "passed", "spliced":
		res.Passed++
	}
}

// settle counts what an attempt did to msg's recipients, and schedules the
// retry of a legitimate one that was deferred (a bot is not retried: its
// later connections, if any, are in the log).
func (res *LogResult) settle(msg *message, o Outcome, sched *Schedule, retries *retryHeap) {
	var deferred []string
	for _, r := range msg.pending {
		switch {
		case contains(o.Accepted, r):
			msg.any, msg.delivered = true, msg.last
		case contains(o.Deferred, r):
			deferred = append(deferred, r)
		case contains(o.Refused, r), contains(o.Faked, r):
			msg.lost = true
		}
	}
	msg.pending = deferred
	if len(deferred) > 0 && msg.Kind == Legit && sched != nil {
		if next, ok := sched.next(msg.At, msg.last, msg.retries, 0); ok {
			msg.retries++
			msg.last = next
			heap.Push(retries, msg)
			return
		}
		msg.lost = true
	}
	if msg.Kind == Spam {
		res.Spam.Messages++
		if msg.any {
			res.Spam.Delivered++
		}
		return
	}
	res.Legit.add(msg)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// add counts a legitimate message that is done.
func (l *LegitStats) add(m *message) {
	l.Messages++
	if m.lost {
		l.Lost++
		return
	}
	l.Delivered++
	d := m.delivered.Sub(m.At)
	if d > 0 {
		l.Delayed++
	}
	l.delays = append(l.delays, d)
}

// WriteJSON writes the report as indented JSON.
func (r *LogReport) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteTable writes what each policy would have done, one column each,
// and the trap candidates.
func (r *LogReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "moat evaluate --log: %d files, %d lines, %s to %s\n", len(r.Files), r.Lines,
		r.First.Format("2006-01-02 15:04"), r.Last.Format("2006-01-02 15:04"))
	fmt.Fprintf(w, "%d sessions from %d hosts; %d legitimate messages, %d called spam by the filters\n", r.Sessions, r.Hosts, r.Legit, r.Spam)
	fmt.Fprintf(w, "deferred senders are assumed to retry as %s\n\n", r.Retry)
	t := newColumns(w, r.Results)
	row := t.row
	row("", func(res *LogResult) string { return res.Policy })
	row("Sessions greylisted", func(res *LogResult) string { return ratio(res.Greylisted, res.Sessions) })
	row("Sessions tarpitted", func(res *LogResult) string { return ratio(res.Tarpitted, res.Sessions) })
	row("Sessions passed or spliced", func(res *LogResult) string { return ratio(res.Passed, res.Sessions) })
	row("Legitimate messages that would wait", func(res *LogResult) string { return ratio(res.Legit.Delayed, res.Legit.Messages) })
	row("Longest wait", func(res *LogResult) string { return dur(res.Legit.Max.D()) })
	row("Wait p50 / p90", func(res *LogResult) string { return dur(res.Legit.P50.D()) + " / " + dur(res.Legit.P90.D()) })
	row("Legitimate messages lost", func(res *LogResult) string { return fmt.Sprint(res.Legit.Lost) })
	row("Retries senders would make", func(res *LogResult) string { return fmt.Sprint(res.Retries) })
	row("Spam messages still delivered", func(res *LogResult) string { return ratio(res.Spam.Delivered, res.Spam.Messages) })
	row("Bot-hours in the tarpit", func(res *LogResult) string { return fmt.Sprintf("%.1f", res.BotHours) })
	if err := t.tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nTrap candidates (addresses refused as unknown to several hosts, never delivered to): %d\n", len(r.Candidates))
	for i, c := range r.Candidates {
		if i == 20 {
			fmt.Fprintf(w, "  … and %d more (--json lists them all)\n", len(r.Candidates)-i)
			break
		}
		fmt.Fprintf(w, "  %s  %d hosts\n", c.Addr, len(c.Hosts))
	}
	return nil
}
