package sim

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"moat/internal/store"
	"moat/internal/tarpit"
)

// Result is what one policy did to one trace. Sessions and messages of the
// warm-up are not counted.
type Result struct {
	Policy  string                 `json:"policy"`
	Elapsed Seconds                `json:"elapsed_s"` // wall time of the run
	Bots    BotStats               `json:"bots"`
	BotsBy  map[string]*BotStats   `json:"bots_by_type"`
	Legit   LegitStats             `json:"legit"`
	LegitBy map[string]*LegitStats `json:"legit_by_type"`
	Tarpit  TarpitStats            `json:"tarpit"`
	// Verdicts counts sessions by sender ("legit", "spam") and verdict.
	Verdicts map[string]map[string]int `json:"verdicts"`

	start time.Time
}

// BotStats is what bots got.
type BotStats struct {
	Sessions     int     `json:"sessions"`
	Stopped      int     `json:"sessions_stopped_before_data"`
	StoppedShare float64 `json:"stopped_share"`
	Messages     int     `json:"messages"`
	Delivered    int     `json:"messages_delivered"` // reached at least one mailbox
}

// LegitStats is what legitimate senders got. A message is delivered when
// the backend took it for every recipient; its delay runs from its first
// attempt to then. A message is lost when a recipient was refused, faked
// by the tarpit, or given up by its sender.
type LegitStats struct {
	Messages  int     `json:"messages"`
	Delivered int     `json:"delivered"`
	Lost      int     `json:"lost"`
	Delayed   int     `json:"delayed"` // delivered later than at the first attempt
	P50       Seconds `json:"delay_p50_s"`
	P90       Seconds `json:"delay_p90_s"`
	P99       Seconds `json:"delay_p99_s"`
	Max       Seconds `json:"delay_max_s"`

	delays []time.Duration
}

// TarpitStats is what the tarpit took from bots.
type TarpitStats struct {
	Sessions int     `json:"sessions"`
	Full     int     `json:"refused_full"` // closed at once: tarpit.max_conns held already
	Peak     int     `json:"peak_held"`
	BotHours float64 `json:"bot_hours"`
	// Messages bots believe the tarpit queued, and the held time per
	// message.
	Messages   int     `json:"messages_faked"`
	PerMessage Seconds `json:"per_message_s"`
	// One session of one message of SingleSize bytes (the bots' mean)
	// from the banner on: the cost the tarpit's words set
	// (tarpit.Replay).
	Single     Seconds `json:"single_message_session_s"`
	SingleSize int     `json:"single_message_bytes"`
	// Hourly is the bot-hours held per hour of the trace, by the hour
	// the session started.
	Hourly []float64 `json:"hourly_bot_hours"`
}

// Seconds is a duration that JSON shows in seconds.
type Seconds time.Duration

func (s Seconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(s).Seconds(), 'f', -1, 64), nil
}

func (s *Seconds) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = Seconds(f * float64(time.Second))
	return nil
}

// D is s as a time.Duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }

func newResult(policy string, tr *Trace) *Result {
	r := &Result{Policy: policy, BotsBy: map[string]*BotStats{}, LegitBy: map[string]*LegitStats{},
		Verdicts: map[string]map[string]int{"legit": {}, "spam": {}}, start: tr.Counted}
	for _, s := range tr.Model.Legit {
		r.LegitBy[s.Name] = &LegitStats{}
	}
	for _, b := range tr.Model.Bots {
		r.BotsBy[b.Name] = &BotStats{}
	}
	return r
}

// session counts one session of m.
func (r *Result) session(rn *runner, m *message, o Outcome) {
	if len(o.Accepted) > 0 {
		m.any, m.delivered = true, m.last
	}
	if m.last.Before(r.start) {
		return
	}
	kind := "legit"
	if m.Kind == Spam {
		kind = "spam"
		b := r.BotsBy[rn.m.Bots[m.Type].Name]
		for _, s := range []*BotStats{&r.Bots, b} {
			s.Sessions++
			if o.Stopped() {
				s.Stopped++
			}
		}
	}
	r.Verdicts[kind][o.Verdict]++
	if !o.Tarpit {
		return
	}
	t := &r.Tarpit
	t.Sessions++
	t.BotHours += o.Held.Hours()
	if len(o.Faked) > 0 {
		t.Messages += o.Cost.Messages
	}
	h := int(m.last.Sub(r.start) / time.Hour)
	for len(t.Hourly) <= h {
		t.Hourly = append(t.Hourly, 0)
	}
	t.Hourly[h] += o.Held.Hours()
}

// message counts m once it is delivered, lost or given up.
func (r *Result) message(rn *runner, m *message) {
	if m.At.Before(r.start) {
		return
	}
	if m.Kind == Spam {
		for _, s := range []*BotStats{&r.Bots, r.BotsBy[rn.m.Bots[m.Type].Name]} {
			s.Messages++
			if m.any {
				s.Delivered++
			}
		}
		return
	}
	r.Legit.add(m)
	r.LegitBy[rn.m.Legit[m.Type].Name].add(m)
}

// finish computes the shares and quantiles.
func (r *Result) finish(p *Player, size int, elapsed time.Duration) {
	r.Elapsed = Seconds(elapsed)
	for _, b := range append([]*BotStats{&r.Bots}, values(r.BotsBy)...) {
		if b.Sessions > 0 {
			b.StoppedShare = float64(b.Stopped) / float64(b.Sessions)
		}
	}
	for _, l := range append([]*LegitStats{&r.Legit}, values(r.LegitBy)...) {
		l.finish()
	}
	t := &r.Tarpit
	t.Full, t.Peak = p.Full, p.Peak
	if t.Messages > 0 {
		t.PerMessage = Seconds(time.Duration(t.BotHours * float64(time.Hour) / float64(t.Messages)))
	}
	if c, err := tarpit.Replay(p.Tarpit, tarpit.Start{Source: store.SourceTrap}, script(true, true, []string{"r"}, size)); err == nil {
		t.Single, t.SingleSize = Seconds(c.Time), size
	}
}

// finish sorts the delays and takes their quantiles.
func (l *LegitStats) finish() {
	slices.Sort(l.delays)
	l.P50, l.P90, l.P99 = quantile(l.delays, 0.5), quantile(l.delays, 0.9), quantile(l.delays, 0.99)
	if n := len(l.delays); n > 0 {
		l.Max = Seconds(l.delays[n-1])
	}
}

// quantile of sorted durations, nearest rank.
func quantile(d []time.Duration, q float64) Seconds {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d))+0.5) - 1
	return Seconds(d[min(max(i, 0), len(d)-1)])
}

func values[V any](m map[string]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
