// Package hotpath benchmarks the decisions moat makes per connection and
// per RCPT, end to end through the real engine, greylist, trap set and
// bolt store, over a store that already holds a million triplets:
//
//	go test -run '^$' -bench . -benchtime 1000000x ./bench/hotpath
//
// A "decision" is what one grey RCPT costs moat's logic: Classify for the
// connecting host, then Engine.Rcpt (trap check, greylist Check, the host's
// grey listing). There are no timing assertions here; the figures and the
// commands are in docs/BENCHMARKS.md.
package hotpath

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/traps"
)

const (
	preloaded = 1_000_000 // triplets in the store before measuring
	greys     = 100_000   // grey hosts they come from, ten triplets each
	whites    = 50_000    // white hosts in the store
)

// fixture is built once and shared by the benchmarks: filling a million
// triplets takes seconds.
var fixture = struct {
	once  sync.Once
	clock *clock.Fake
	dir   string
	st    *bolt.Store
	eng   *classify.Engine
	err   error
}{clock: clock.NewFake(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.st != nil {
		fixture.st.Close()
	}
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

// client returns the i-th grey client: 10.0.0.0/8, so that triplets fold
// to many /24 networks.
func client(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// white returns the i-th white host: 172.16.0.0/12.
func white(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, 16 + byte(i>>16)&15, byte(i >> 8), byte(i)})
}

func sender(i int) string { return fmt.Sprintf("s%d@sender.example", i) }
func rcpt(i int) string   { return fmt.Sprintf("r%d@example.org", i%5000) }

func setup(b *testing.B) *classify.Engine {
	fixture.once.Do(func() {
		fixture.dir, fixture.err = os.MkdirTemp("", "moat-hotpath-")
		if fixture.err != nil {
			return
		}
		// The engine, the greylist and the store read one clock that
		// stands still: on the wall clock, a preloaded attempt would come
		// of age (min_retry) while a long run is still going, and its
		// retries would pass instead of being deferred.
		c := fixture.clock
		st, err := bolt.Open(filepath.Join(fixture.dir, "moat.db"), bolt.Options{Clock: c})
		if err != nil {
			fixture.err = err
			return
		}
		fixture.st = st
		g := greylist.New(greylist.Config{MinRetry: time.Minute, RetryWindow: 24 * time.Hour, PassTTL: 36 * 24 * time.Hour}, st, c)
		ts, err := traps.New(st, []string{"trap@example.org"})
		if err != nil {
			fixture.err = err
			return
		}
		fixture.eng = classify.New(classify.Config{
			Whitelist: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
			Blacklist: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			BlackTTL:  24 * time.Hour, WhiteTTL: 36 * 24 * time.Hour, GreyTTL: 24 * time.Hour,
		}, st, c, g, ts)
		// First attempts seen just now: a retry within the benchmark is
		// "too soon", the path every bot and every first retry takes.
		now := c.Now()
		a := store.Attempt{First: now, Last: now, Count: 1, Expires: now.Add(24 * time.Hour)}
		for i := range preloaded {
			if fixture.err = st.PutTriplet(g.Triplet(client(i%greys), sender(i), rcpt(i)), a); fixture.err != nil {
				return
			}
		}
		// Their hosts are listed grey, as the dialog left them.
		for i := range greys {
			h := store.Host{Prefix: store.HostPrefix(client(i)), Class: store.Grey, Reason: "greylisted: first attempt", First: now, Last: now, Expires: now.Add(24 * time.Hour)}
			if fixture.err = st.PutHost(h); fixture.err != nil {
				return
			}
		}
		for i := range whites {
			h := store.Host{Prefix: store.HostPrefix(white(i)), Class: store.White, Reason: "greylist: retried", First: now, Last: now, Expires: now.Add(time.Hour)}
			if fixture.err = st.PutHost(h); fixture.err != nil {
				return
			}
		}
		fixture.err = st.Flush(context.Background())
	})
	if fixture.err != nil {
		b.Fatal(fixture.err)
	}
	return fixture.eng
}

// BenchmarkDecision runs decisions in parallel over the preloaded store.
//
//	known:  a retry of a stored triplet from a host listed grey: a read,
//	        and a write of the attempt
//	new:    a triplet never seen, from a host never seen: a new triplet
//	        and a new grey host entry
//	mixed:  80% known, 10% new, 10% white hosts (Classify answers, no RCPT)
func BenchmarkDecision(b *testing.B) {
	eng := setup(b)
	var newSeq atomic.Int64
	newSeq.Store(1 << 22) // clients and senders beyond the preloaded ones
	for _, mix := range []string{"known", "new", "mixed"} {
		b.Run(mix, func(b *testing.B) {
			// Commit what earlier runs left, so that their backlog
			// does not run on this one's clock.
			if err := fixture.st.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			var seq atomic.Int64
			var errs atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(seq.Add(1) * 7919 % preloaded)
					kind := mix
					if mix == "mixed" {
						switch i % 10 {
						case 0:
							kind = "new"
						case 1:
							kind = "white"
						default:
							kind = "known"
						}
					}
					var c netip.Addr
					var s, r string
					switch kind {
					case "white":
						c = white(i % whites)
					case "new":
						n := int(newSeq.Add(1))
						c, s, r = client(n), sender(n), rcpt(n)
					default:
						c, s, r = client(i%greys), sender(i), rcpt(i)
					}
					v, err := eng.Classify(c)
					if err != nil {
						errs.Add(1)
						continue
					}
					if v.Class != store.Grey {
						continue
					}
					d, err := eng.Rcpt(c, s, r)
					if err != nil || d.Action != classify.Defer {
						errs.Add(1)
					}
				}
			})
			b.StopTimer()
			if n := errs.Load(); n > 0 {
				b.Fatalf("%d decisions failed or were not a deferral", n)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkPersistNew writes new triplets through the greylist and waits
// until they are committed: the sustained rate at which first attempts
// become durable, on top of the preloaded million.
func BenchmarkPersistNew(b *testing.B) {
	setup(b)
	st := fixture.st
	g := greylist.New(greylist.Config{MinRetry: time.Minute, RetryWindow: 24 * time.Hour}, st, fixture.clock)
	base := 1 << 23 // beyond BenchmarkDecision's new clients
	b.ResetTimer()
	for i := range b.N {
		n := base + i
		if _, err := g.Check(client(n), sender(n), rcpt(n)); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "triplets/s")
}
