package classify

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"testing"
	"time"

	"moat/internal/greylist"
	"moat/internal/reputation/dnstest"
	"moat/internal/store"
)

// The pool simulation replays a Gmail-like sender against the Engine on a
// fake clock: messages to fresh recipients every 5 minutes for a day, each
// attempt (first and every retry) from a random address of a pool spread
// over many /24s, as the big providers do. It reports how long delivery
// takes with greylisting by /24 alone and with SPF-aware pools. Run it
// with
//
//	go test -run TestPoolSimulation -v ./internal/classify/
//
// and see docs/reputation.md for the figures.

// gmailRetries is the sender's schedule, as offsets from the first
// attempt: minutes at first, then doubling, then every 8 hours up to five
// days (Postfix's maximal_queue_lifetime).
var gmailRetries = func() []time.Duration {
	d := []time.Duration{0, 5 * time.Minute, 12 * time.Minute, 25 * time.Minute, 50 * time.Minute,
		100 * time.Minute, 200 * time.Minute, 400 * time.Minute, 800 * time.Minute}
	for t := 24 * time.Hour; t <= 5*24*time.Hour; t += 8 * time.Hour {
		d = append(d, t)
	}
	return d
}()

type simEvent struct {
	at      time.Time
	msg     int
	attempt int
}

type simQueue []simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].msg < q[j].msg
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simResult struct {
	messages, delivered int
	attempts            []int
	delays              []time.Duration
}

func (r simResult) String() string {
	sort.Slice(r.delays, func(i, j int) bool { return r.delays[i] < r.delays[j] })
	pct := func(p float64) time.Duration {
		if len(r.delays) == 0 {
			return 0
		}
		return r.delays[int(p*float64(len(r.delays)-1))]
	}
	sum := 0
	for _, a := range r.attempts {
		sum += a
	}
	mean := 0.0
	if len(r.attempts) > 0 {
		mean = float64(sum) / float64(len(r.attempts))
	}
	return fmt.Sprintf("delivered %d/%d (%.0f%%), attempts mean %.2f, delay median %s, p90 %s, max %s",
		r.delivered, r.messages, 100*float64(r.delivered)/float64(r.messages), mean,
		pct(0.5), pct(0.9), pct(1))
}

// simulate sends n messages from a pool of nets /24s (10.64.0.0 onwards, at most 64).
func simulate(t *testing.T, srv *dnstest.Server, nets, n int, pools bool) simResult {
	f := newFixture(t, Config{})
	rep := Reputation{}
	if pools {
		rep.Pools = greylist.NewPools(greylist.PoolsConfig{Servers: []string{srv.Addr}, Clock: f.clk, AskReserved: true})
	}
	f.eng.SetReputation(rep)
	rng := rand.New(rand.NewPCG(1, 2))
	start := f.clk.Now()
	q := &simQueue{}
	for i := 0; i < n; i++ {
		heap.Push(q, simEvent{at: start.Add(time.Duration(i) * 5 * time.Minute), msg: i})
	}
	res := simResult{messages: n}
	for q.Len() > 0 {
		ev := heap.Pop(q).(simEvent)
		f.clk.Set(ev.at)
		client := netip.AddrFrom4([4]byte{10, 64, byte(rng.IntN(nets)), byte(1 + rng.IntN(254))})
		delivered := false
		if v, _ := f.eng.Classify(client); v.Class == store.White {
			delivered = true // spliced: a pool address that passed before
		} else if d, err := f.eng.Rcpt(client, "alice@gmail-like.test", fmt.Sprintf("u%d@example.org", ev.msg)); err != nil {
			t.Fatal(err)
		} else if delivered = d.Action == Pass; delivered {
			// The backend accepts the message: the host is white.
			if _, err := f.eng.Accepted(client, "alice@gmail-like.test", d.Reason); err != nil {
				t.Fatal(err)
			}
		}
		if delivered {
			res.delivered++
			res.attempts = append(res.attempts, ev.attempt+1)
			res.delays = append(res.delays, gmailRetries[ev.attempt])
			continue
		}
		if next := ev.attempt + 1; next < len(gmailRetries) {
			first := ev.at.Add(-gmailRetries[ev.attempt])
			heap.Push(q, simEvent{at: first.Add(gmailRetries[next]), msg: ev.msg, attempt: next})
		}
	}
	return res
}

func TestPoolSimulation(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, `gmail-like.test. 300 IN TXT "v=spf1 ip4:10.64.0.0/18 -all"`)
	for _, nets := range []int{64, 16} {
		without := simulate(t, srv, nets, 200, false)
		with := simulate(t, srv, nets, 200, true)
		t.Logf("pool of %d /24s, /24 folding only: %s", nets, without)
		t.Logf("pool of %d /24s, with SPF pools:   %s", nets, with)
		if with.delivered != with.messages {
			t.Errorf("%d /24s: SPF pools delivered %d of %d", nets, with.delivered, with.messages)
		}
		for _, a := range with.attempts {
			if a > 2 {
				t.Errorf("%d /24s: with SPF pools a message needed %d attempts, want at most 2", nets, a)
				break
			}
		}
		if without.delivered > with.delivered || sum(without.attempts)/max(1, len(without.attempts)) < sum(with.attempts)/max(1, len(with.attempts)) {
			t.Errorf("%d /24s: /24 folding alone did better than SPF pools", nets)
		}
	}
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}
