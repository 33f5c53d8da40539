package redis

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
	"moat/internal/store/redis/redistest"
	"moat/internal/store/storetest"
)

// Redis Cluster, three masters: the store passes the whole conformance
// suite with its keys spread over every master, and two moats on it share
// changes, compare-and-set updates and tallies.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	url := cl.URL()
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, c *clock.Fake) store.Store { return openT(t, url, newPrefix(), c) })
	})
	t.Run("Durable", func(t *testing.T) {
		var prefix string
		storetest.RunDurable(t,
			func(t *testing.T, c *clock.Fake) store.Store { prefix = newPrefix(); return openT(t, url, prefix, c) },
			func(t *testing.T, c *clock.Fake) store.Store { return openT(t, url, prefix, c) })
	})
	t.Run("ChangesReachOtherMoat", func(t *testing.T) { changesReachOtherMoat(t, url) })
	t.Run("UpdateHostAcrossMoats", func(t *testing.T) { updateHostAcrossMoats(t, url) })
	t.Run("TallyShared", func(t *testing.T) { tallyShared(t, url) })
}

// TestTallyShared: two moats on one Redis count into one tally.
func TestTallyShared(t *testing.T) { tallyShared(t, redistest.Start(t).URL(0)) }

func tallyShared(t *testing.T, url string) {
	opt := Options{Prefix: newPrefix()}
	a, b := openOpt(t, url, opt), openOpt(t, url, opt)
	now := time.Now()
	for i, s := range []*Store{a, b, a, b} {
		n, err := s.Tally("net:192.0.2.0/24", fmt.Sprintf("192.0.2.%d", i), now, time.Hour, 256)
		if err != nil || n != i+1 {
			t.Fatalf("note %d: %d, %v; want %d", i, n, err, i+1)
		}
	}
}

// A Sentinel set-up (a master, a replica, three Sentinels) with two moats
// on it. Flush reports a write durable only once the replica has it: with
// the replica hung it fails and the write is kept and sent again; when
// the master dies and the replica takes over, every write a Flush
// acknowledged is on the new master, both moats carry on, and once the
// old master is back as a replica they acknowledge writes again.
func TestSentinelFailover(t *testing.T) {
	sen := redistest.StartSentinel(t)
	url := sen.URL(0)
	prefix := newPrefix()
	opt := Options{Prefix: prefix, HealthInterval: 100 * time.Millisecond}
	a, b := openOpt(t, url, opt), openOpt(t, url, opt)
	ctx := context.Background()
	p := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	host := func(i int, who string) store.Host {
		return store.Host{Prefix: p(i), Class: store.Black, Source: store.SourceTrap, Reason: who}
	}

	// A hung replica: the master takes the write, Flush says it is not
	// durable, the write stays visible here, and once the replica is back
	// the writer's next try makes it durable.
	sen.Replica.Pause(t)
	if err := a.PutHost(host(0, "a")); err != nil {
		t.Fatal(err)
	}
	err := a.Flush(ctx)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("Flush with the replica hung: %v, want ErrUnavailable naming the replicas", err)
	}
	if h, ok, err := a.Host(p(0)); err != nil || !ok || h.Reason != "a" {
		t.Errorf("the unconfirmed write is not visible on its moat: %+v %v %v", h, ok, err)
	}
	sen.Replica.Resume(t)
	eventuallyFlushed(t, a)

	// Two moats write hosts (half of them by compare-and-set, as class
	// changes are written) and triplets, and Flush after each; the master
	// dies in the middle.
	var (
		mu    sync.Mutex
		acked = map[netip.Prefix]string{} // what a nil Flush acknowledged
		trips = map[store.Triplet]bool{}
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		after [2]int // acknowledgements after the old master rejoined
	)
	for w, s := range []*Store{a, b} {
		who := fmt.Sprintf("moat%d", w)
		wg.Go(func() {
			var pending []netip.Prefix
			var ptrips []store.Triplet
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// A write that failed (Redis down) is no write: only
				// the ones taken count.
				h := host(w<<20|i, who)
				var err error
				if i%2 == 0 {
					_, _, err = s.UpdateHost(h.Prefix, func(store.Host, bool) (store.Host, bool) { return h, true })
				} else {
					err = s.PutHost(h)
				}
				if err == nil {
					pending = append(pending, h.Prefix)
				}
				tr := store.Triplet{Net: h.Prefix, Sender: who + "@example.org", Rcpt: "r@example.net"}
				if s.PutTriplet(tr, store.Attempt{Count: 1, First: time.Now(), Last: time.Now(), Expires: time.Now().Add(time.Hour)}) == nil {
					ptrips = append(ptrips, tr)
				}
				if err := s.Flush(ctx); err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				for _, q := range pending {
					acked[q] = who
				}
				for _, tr := range ptrips {
					trips[tr] = true
				}
				after[w]++
				mu.Unlock()
				pending, ptrips = pending[:0], ptrips[:0]
			}
		})
	}
	waitCount := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		mu.Lock()
		after = [2]int{}
		mu.Unlock()
		for {
			mu.Lock()
			done := after[0] >= n && after[1] >= n
			mu.Unlock()
			if done {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: fewer than %d writes of each moat acknowledged after 30s", what, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	begin := time.Now()
	waitCount("before the failover", 20)
	t.Logf("writing: %v", time.Since(begin).Round(time.Millisecond))
	sen.Failover(t)
	t.Logf("failover done: %v", time.Since(begin).Round(time.Millisecond))
	// The new master has no replica: nothing can be durable until the
	// old master is back, as a replica, and has caught up.
	sen.RejoinOld(t)
	t.Logf("old master rejoined: %v", time.Since(begin).Round(time.Millisecond))
	waitCount("after the old master rejoined", 20)
	t.Logf("writes acknowledged again: %v", time.Since(begin).Round(time.Millisecond))
	close(stop)
	wg.Wait()

	// Every acknowledged write is on the new master: a third moat, with
	// nothing cached, finds them all.
	c := openOpt(t, url, Options{Prefix: prefix})
	missing := 0
	for q, who := range acked {
		h, ok, err := c.Host(q)
		if err != nil || !ok || h.Reason != who {
			missing++
			if missing < 5 {
				t.Errorf("acknowledged host %s of %s: %+v %v %v", q, who, h, ok, err)
			}
		}
	}
	for tr := range trips {
		if _, ok, err := c.Triplet(tr); err != nil || !ok {
			missing++
			if missing < 5 {
				t.Errorf("acknowledged triplet %s: %v %v", tr, ok, err)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes lost in the failover", missing, len(acked)+len(trips))
	}
	t.Logf("%d hosts and %d triplets acknowledged across the failover, all on the new master", len(acked), len(trips))
	for _, s := range []*Store{a, b} {
		if down, _ := s.Down(); down {
			t.Errorf("a moat still counts Redis as down after the failover")
		}
	}
}

// eventuallyFlushed retries Flush for up to 10s: the writer sends again
// what too few replicas confirmed, on its own schedule.
func eventuallyFlushed(t *testing.T, s *Store) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = s.Flush(context.Background()); err == nil {
			return
		}
	}
	t.Fatalf("Flush still fails after 10s: %v", err)
}
