package sim

import (
	"container/heap"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/ledger"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/tarpit"
)

// Attempt is one connection of a sender, as it behaves on the wire: it
// talks before the banner or waits for it, then names its sender and its
// recipients, and sends its message to whichever recipients were taken.
type Attempt struct {
	Client    netip.Addr
	EarlyTalk bool          // writes before the banner
	Sender    string        // normalised; "" for <>
	Rcpts     []string      // normalised; none: it leaves before MAIL
	Patience  time.Duration // how long it stays in the tarpit at most; 0: as long as it is kept
	Size      int           // bytes of its message; 0: a few lines
}

// Outcome is what became of an attempt.
type Outcome struct {
	Class    store.Class // at connect
	Verdict  string      // as moat's session log line says it
	Reason   string
	Accepted []string // the backend took the message for these
	Deferred []string // 4xx: the sender keeps them
	Refused  []string // 5xx: the sender gives them up
	Faked    []string // the tarpit said 250 for these: nothing was delivered
	Tarpit   bool     // the session ended in the tarpit
	Held     time.Duration
	Cost     tarpit.Cost // what the tarpit's replies cost the sender, before its patience ran out
}

// Stopped reports whether the session delivered nothing.
func (o Outcome) Stopped() bool { return len(o.Accepted) == 0 }

// Player plays attempts against an engine the way moat's server and grey
// dialog do: the same engine methods, in the same order, with the same
// arguments. What the dialog decides by itself (the greet delay, limits)
// is played from the same configuration.
type Player struct {
	Eng        *classify.Engine
	Clock      clock.Clock
	GreetDelay time.Duration
	MaxRcpts   int
	Tarpit     tarpit.Config
	// Mailbox says which recipients the backend accepts.
	Mailbox func(rcpt string) bool
	// Ledger hears how long each held session took, as the server's
	// does; nil: the time is not kept in the store (an evaluation
	// reports it from the outcomes).
	Ledger *ledger.Ledger

	costs map[costKey]tarpit.Cost
	ends  endHeap // when the sessions held now end, for tarpit.max_conns
	Full  int     // black sessions the tarpit had no room for
	Peak  int     // most sessions held at once
}

// The grey dialog's verdicts, weakest first: when several things happen
// in one session the strongest is logged (internal/dialog).
var verdictRank = map[string]int{
	"closed": 0, "quit": 1, "greylisted": 2, "tempfail": 3, "refused": 4, "passed": 5,
	"black": 14, "early-talker": 15, "trap": 16,
}

func (o *Outcome) verdict(v, reason string) {
	if o.Verdict == "" || verdictRank[v] >= verdictRank[o.Verdict] {
		o.Verdict, o.Reason = v, reason
	}
}

// Play runs one attempt. The engine's clock must be at the time of the
// connection.
func (p *Player) Play(a Attempt) Outcome {
	var o Outcome
	v, _ := p.Eng.Classify(a.Client)
	o.Class = v.Class
	switch v.Class {
	case store.White:
		// Spliced: the backend answers everything.
		p.Eng.Seen(a.Client, v)
		o.Verdict, o.Reason = "spliced", v.Reason
		for _, r := range a.Rcpts {
			if p.Mailbox(r) {
				o.Accepted = append(o.Accepted, r)
			} else {
				o.Refused = append(o.Refused, r)
			}
		}
		return o
	case store.Black:
		o.Verdict, o.Reason = "tarpit", v.Reason
		p.hold(&o, a, tarpit.Start{Source: v.Source}, script(true, true, a.Rcpts, a.Size), a.Rcpts)
		return o
	}
	if p.GreetDelay > 0 && a.EarlyTalk {
		// It had the banner's first line at the grey dialog's pace; the
		// tarpit stutters the rest.
		o.verdict("early-talker", fmt.Sprintf("sent %d bytes before the banner", len(ehloLine)))
		p.Eng.EarlyTalker(a.Client, "early talker: "+o.Reason)
		p.hold(&o, a, tarpit.Start{Greeted: true, Reply: p.Tarpit.Words.BannerLast(), Pending: []byte(ehloLine), Source: store.SourceEarlyTalk},
			script(false, true, a.Rcpts, a.Size), a.Rcpts)
		return o
	}
	if len(a.Rcpts) == 0 {
		o.verdict("quit", "")
		return o
	}
	d, _ := p.Eng.Mail(a.Client, a.Sender)
	switch d.Action {
	case classify.Trap, classify.Black:
		o.verdict(blackVerdict(d), d.Reason)
		p.hold(&o, a, tarpit.Start{Greeted: true, Helo: true, InMail: true, Reply: smtp.ReplyMailOK, Source: d.Source}, script(false, false, a.Rcpts, a.Size), a.Rcpts)
		return o
	case classify.Refuse:
		o.verdict("refused", d.Reason)
		o.Refused = a.Rcpts
		return o
	}
	passed, passReason := false, ""
	var taken []string
	for i, r := range a.Rcpts {
		if i >= p.MaxRcpts {
			o.Deferred = append(o.Deferred, r)
			continue
		}
		judge := p.Eng.Rcpt
		if passed {
			judge = p.Eng.RcptPassed
		}
		d, err := judge(a.Client, a.Sender, r)
		switch d.Action {
		case classify.Trap, classify.Black:
			look := smtp.ReplyGreylisted
			if passed {
				look = smtp.ReplyRcptOK
			}
			o.verdict(blackVerdict(d), d.Reason)
			// The backend is dropped, and the end of the message is
			// the tarpit's: the recipients the sender saw taken (the
			// backend's, this one after a pass, the rest) get its
			// 250, and nothing is delivered.
			faked := append([]string(nil), a.Rcpts[i+1:]...)
			if passed {
				faked = append(append(taken, r), faked...)
			} else {
				o.Deferred = append(o.Deferred, r)
			}
			p.hold(&o, a, tarpit.Start{Greeted: true, Helo: true, InMail: true, Rcpts: i + 1, Reply: look, Source: d.Source},
				script(false, false, a.Rcpts[i+1:], a.Size), faked)
			return o
		case classify.Refuse:
			o.verdict("refused", d.Reason)
			o.Refused = append(o.Refused, r)
		case classify.Pass:
			if !passed {
				passed, passReason = true, d.Reason
				o.verdict("passed", d.Reason)
			}
			if p.Mailbox(r) {
				taken = append(taken, r)
			} else {
				o.Refused = append(o.Refused, r)
			}
		default:
			if err != nil {
				o.verdict("tempfail", err.Error())
			} else {
				o.verdict("greylisted", d.Reason)
			}
			o.Deferred = append(o.Deferred, r)
		}
	}
	if o.Verdict == "" {
		o.verdict("quit", "")
	}
	if len(taken) == 0 {
		return o
	}
	// Before DATA the host's class is read once more: it may have turned
	// black since its recipients were taken.
	switch d, err := p.Eng.Data(a.Client); d.Action {
	case classify.Black:
		o.verdict("black", d.Reason)
		p.hold(&o, a, tarpit.Start{Greeted: true, Helo: true, InMail: true, Rcpts: len(a.Rcpts), Pending: []byte("DATA\r\n"), Source: d.Source},
			script(false, false, nil, a.Size)[len("DATA\r\n"):], taken)
		return o
	case classify.Defer:
		o.verdict("tempfail", fmt.Sprint("store unavailable before DATA: ", err))
		o.Deferred = append(o.Deferred, taken...)
		return o
	}
	// The backend said 250 at the end of DATA.
	o.Accepted = taken
	p.Eng.Accepted(a.Client, a.Sender, passReason)
	return o
}

func blackVerdict(d classify.Decision) string {
	if d.Action == classify.Trap {
		return "trap"
	}
	return "black"
}

// ehloLine is what an early talker writes before the banner.
const ehloLine = "EHLO bot.example\r\n"

// script is the rest of a sender's side of a session: EHLO if it is still
// to come, MAIL if it is still to come, the recipients, a message of about
// size bytes and QUIT. Addresses and text are placeholders: the tarpit's
// replies do not depend on them.
func script(ehlo, mail bool, rcpts []string, size int) []byte {
	var b strings.Builder
	if ehlo {
		b.WriteString(ehloLine)
	}
	if mail {
		b.WriteString("MAIL FROM:<s@bot.example>\r\n")
	}
	for range rcpts {
		b.WriteString("RCPT TO:<r@site.example>\r\n")
	}
	b.WriteString("DATA\r\nSubject: offer\r\n\r\n")
	for body := 0; body < size; body += 78 {
		b.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	b.WriteString("Buy now.\r\n.\r\nQUIT\r\n")
	return []byte(b.String())
}

type costKey struct {
	source          store.Source
	greeted, inMail bool
	reply           string
	pending         int
	script          string
}

// hold gives the rest of the session to the tarpit: it charges the sender
// what the tarpit's replies cost it (or what its patience allows), and
// tells the engine how long the host was held, as the server does when a
// held connection ends.
// faked are the recipients the tarpit's final 250 is for.
func (p *Player) hold(o *Outcome, a Attempt, st tarpit.Start, rest []byte, faked []string) {
	o.Tarpit = true
	now := p.Clock.Now()
	p.ends.expire(now)
	if len(p.ends) >= p.Tarpit.MaxConns {
		// The tarpit is full: the connection is closed at once.
		p.Full++
		return
	}
	k := costKey{st.Source, st.Greeted, st.InMail, st.Reply, len(st.Pending), string(rest)}
	c, ok := p.costs[k]
	if !ok {
		var err error
		if c, err = tarpit.Replay(p.Tarpit, st, rest); err != nil {
			panic("sim: tarpit: " + err.Error())
		}
		if p.costs == nil {
			p.costs = map[costKey]tarpit.Cost{}
		}
		p.costs[k] = c
	}
	o.Cost = c
	o.Held = c.Time
	if a.Patience > 0 && a.Patience < o.Held {
		o.Held = a.Patience
	}
	if o.Held >= c.Time {
		switch {
		case c.Messages > 0:
			// It waited for the last 250: it believes its message
			// was sent.
			o.Faked = faked
		case c.Deferred > 0:
			// Told 451 at the end of DATA (tarpit.final_reply): the
			// sender keeps the message and tries again.
			o.Deferred = append(o.Deferred, faked...)
		case c.Refused > 0:
			// Told 554: the sender bounces it.
			o.Refused = append(o.Refused, faked...)
		}
	}
	heap.Push(&p.ends, now.Add(o.Held))
	p.Peak = max(p.Peak, len(p.ends))
	if p.Ledger != nil {
		p.Ledger.Held(a.Client, o.Held)
	}
}

// endHeap holds the times the sessions held now end (container/heap).
type endHeap []time.Time

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *endHeap) Pop() any {
	s := *h
	t := s[len(s)-1]
	*h = s[:len(s)-1]
	return t
}

// expire drops the sessions that ended by now.
func (h *endHeap) expire(now time.Time) {
	for h.Len() > 0 && !(*h)[0].After(now) {
		heap.Pop(h)
	}
}
