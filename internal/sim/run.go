package sim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/clock"
	"moat/internal/daemon"
	"moat/internal/reputation"
	"moat/internal/store/bolt"
)

// Options tune a run.
type Options struct {
	// Progress is called now and then, and once at the end, with the
	// messages played so far over all policies and their total, from one
	// goroutine at a time.
	Progress func(done, total int64)
	// Sessions, when set, is called for every session of every policy,
	// from that policy's goroutine.
	Sessions func(policy string, at time.Time, a Attempt, o Outcome)
}

// Run plays the trace against every policy, each on its own engine, store
// and clock, in parallel, and returns their results in the order given.
func Run(tr *Trace, policies []Policy, opt Options) ([]*Result, error) {
	results := make([]*Result, len(policies))
	errs := make([]error, len(policies))
	done := make([]atomic.Int64, len(policies))
	total := int64(len(tr.Messages)) * int64(len(policies))
	stop := make(chan struct{})
	var tick sync.WaitGroup
	if opt.Progress != nil {
		tick.Add(1)
		go func() {
			defer tick.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					opt.Progress(total, total)
					return
				case <-t.C:
					var n int64
					for i := range done {
						n += done[i].Load()
					}
					opt.Progress(n, total)
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for i := range policies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = runPolicy(tr, policies[i], opt, &done[i])
		}()
	}
	wg.Wait()
	close(stop)
	tick.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", policies[i].Name, err)
		}
	}
	return results, nil
}

// runner plays one trace against one policy.
type runner struct {
	tr     *Trace
	m      *Model
	pol    Policy
	clk    *clock.Fake
	player *Player
	follow bool // the policy reads the filter's verdicts
	res    *Result
	opt    Options
	queue  retryHeap
}

// message is a message on its way: what is left to deliver and where the
// sender tries from.
type message struct {
	*Message
	rng       *rand.Rand
	pending   []string
	client    netip.Addr // where the next attempt comes from
	host      int        // its index in the pool
	retries   int
	nets      []int         // networks tried, for new-network
	queue     time.Duration // the sender's queue-run phase
	lost      bool
	last      time.Time // the attempt being played, then the next one
	any       bool      // the backend took it for some recipient
	delivered time.Time // when the backend last took it
}

func runPolicy(tr *Trace, pol Policy, opt Options, done *atomic.Int64) (*Result, error) {
	began := time.Now()
	from, _, _ := tr.Model.Span()
	clk := clock.NewFake(from)
	st := bolt.Memory(bolt.Options{Clock: clk})
	defer st.Close()
	cfg := pol.engineConfig(tr.Model)
	eng, err := daemon.NewSimEngine(cfg, st, clk, newSPFResolver(tr.Model))
	if err != nil {
		return nil, err
	}
	r := &runner{tr: tr, m: tr.Model, pol: pol, clk: clk, opt: opt,
		follow: len(cfg.Reputation.Follow) > 0,
		res:    newResult(pol.Name, tr),
		player: &Player{
			Eng:        eng,
			Clock:      clk,
			GreetDelay: cfg.Greylist.GreetDelay.Duration,
			MaxRcpts:   cfg.Limits.MaxRcpts,
			Tarpit:     daemon.TarpitConfig(cfg, daemon.NewWords(cfg, false)),
			Mailbox:    tr.Model.isMailbox,
		}}
	msgs := tr.Messages
	for i := 0; i < len(msgs) || len(r.queue) > 0; {
		var m *message
		if i < len(msgs) && (len(r.queue) == 0 || !r.queue[0].last.Before(msgs[i].At)) {
			m = r.start(&msgs[i])
			i++
			done.Store(int64(i))
		} else {
			m = heap.Pop(&r.queue).(*message)
		}
		r.attempt(m)
	}
	r.res.finish(r.player, tr.Model.botMessageSize(), time.Since(began))
	return r.res, nil
}

func (r *runner) start(msg *Message) *message {
	m := &message{Message: msg, rng: rand.New(rand.NewPCG(msg.seed, uint64(msg.ID))),
		pending: msg.Rcpts, host: msg.Host, last: msg.At}
	if q := r.schedule(m).QueueRun.Duration; q > 0 {
		m.queue = time.Duration(m.rng.Int64N(int64(q)))
	}
	m.nets = []int{network(r.pool(m), m.host)}
	m.client = addr(m.Kind, m.Type, r.pool(m), m.host)
	return m
}

func (r *runner) schedule(m *message) *Schedule {
	if m.Kind == Legit {
		return &r.m.Legit[m.Type].Schedule
	}
	return &r.m.Bots[m.Type].Schedule
}

func (r *runner) pool(m *message) Pool {
	if m.Kind == Legit {
		return r.m.Legit[m.Type].Pool
	}
	return r.m.Bots[m.Type].Pool
}

// attempt plays one connection of m at m.last and schedules its retry.
func (r *runner) attempt(m *message) {
	r.clk.Set(m.last)
	a := Attempt{Client: m.client, Sender: m.Sender, Rcpts: m.pending}
	if m.Kind == Spam {
		b := r.m.Bots[m.Type]
		a.EarlyTalk, a.Patience, a.Size = b.EarlyTalk, b.Patience.Duration, b.MessageSize
	}
	o := r.player.Play(a)
	if r.opt.Sessions != nil {
		r.opt.Sessions(r.pol.Name, m.last, a, o)
	}
	r.res.session(r, m, o)
	if len(o.Accepted) > 0 && r.follow {
		r.feedback(m, a.Client)
	}
	if len(o.Refused) > 0 || len(o.Faked) > 0 {
		m.lost = true
	}
	m.pending = o.Deferred
	if len(m.pending) == 0 {
		r.res.message(r, m)
		return
	}
	next, ok := r.schedule(m).next(m.At, m.last, m.retries, m.queue)
	if !ok {
		m.lost = true
		r.res.message(r, m)
		return
	}
	m.retries++
	m.last = next
	r.retryFrom(m)
	m.client = addr(m.Kind, m.Type, r.pool(m), m.host)
	heap.Push(&r.queue, m)
}

// retryFrom picks the address the next attempt comes from.
func (r *runner) retryFrom(m *message) {
	p := r.pool(m)
	switch r.schedule(m).RetryFrom {
	case "pool":
		m.host = m.rng.IntN(p.Hosts)
	case "new-network":
		if len(m.nets) >= p.Networks {
			m.host = m.rng.IntN(p.Hosts)
			return
		}
		for {
			h := m.rng.IntN(p.Hosts)
			n := network(p, h)
			used := false
			for _, x := range m.nets {
				used = used || x == n
			}
			if !used {
				m.host = h
				m.nets = append(m.nets, n)
				return
			}
		}
	}
}

// feedback is the backend's filter verdict on a delivered message, as a
// policy that follows the filter's log reads it.
func (r *runner) feedback(m *message, client netip.Addr) {
	v := reputation.Ham
	switch x := m.rng.Float64(); {
	case m.Kind == Spam && x < r.m.Filter.SpamCaught, m.Kind == Legit && x < r.m.Filter.HamMarkedSpam:
		v = reputation.Spam
	}
	r.player.Eng.Feedback(reputation.Feedback{IP: client, Verdict: v, Source: "filter"})
}

// retryHeap orders messages by their next attempt (container/heap).
type retryHeap []*message

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].before(h[j]) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*message)) }
func (h *retryHeap) Pop() any {
	s := *h
	m := s[len(s)-1]
	s[len(s)-1] = nil
	*h = s[:len(s)-1]
	return m
}

// before orders by time, then by message, so runs are reproducible.
func (m *message) before(o *message) bool {
	if !m.last.Equal(o.last) {
		return m.last.Before(o.last)
	}
	return m.ID < o.ID
}
