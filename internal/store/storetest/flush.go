package storetest

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
)

func testFlush(t *testing.T, s store.Store, c *clock.Fake) {
	ctx := context.Background()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush of an empty store: %v", err)
	}
	put(t, s, host("192.0.2.1/32", "x", store.Black))
	s.PutTriplet(trip("192.0.2.0/24", "a", "b"), store.Attempt{Count: 1})
	s.AddTrap("trap@example.org")
	s.Add("n", 1)
	s.Put("k", "x", []byte("v"), time.Time{})
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			s.Add("n", 1)
			s.PutTriplet(trip("192.0.2.0/24", "a", fmt.Sprint(i)), store.Attempt{Count: 1})
			if err := s.Flush(ctx); err != nil {
				t.Errorf("concurrent Flush: %v", err)
			}
		})
	}
	wg.Wait()
	// Everything is still readable after flushing.
	wantLookup(t, s, "192.0.2.1", "192.0.2.1/32")
	if m, _ := s.Counters(); m["n"] != 9 {
		t.Errorf("counter n = %d after flushes, want 9", m["n"])
	}
	wantTraps(t, s, "trap@example.org")
	wantRecord(t, s, "k", "x", "v", true)
}

func testConcurrency(t *testing.T, s store.Store, c *clock.Fake) {
	const workers, ops = 8, 200
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s.Lookup(ip("10.0.1.1"))
				s.Hosts(func(store.Host) bool { return true })
				s.Triplet(trip("10.0.0.0/24", "s0", "r0"))
				s.Traps()
				s.Counters()
				s.Scan("k", func(string, []byte) bool { return true })
			}
		})
	}
	for w := range workers {
		wg.Go(func() {
			for i := range ops {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(w), byte(i), 1}), 32)
				if err := s.PutHost(store.Host{Prefix: p, Class: store.Black, Reason: "c"}); err != nil {
					t.Errorf("PutHost: %v", err)
					return
				}
				if _, ok, _ := s.Lookup(p.Addr()); !ok {
					t.Errorf("Lookup(%v) right after PutHost found nothing", p.Addr())
				}
				tr := trip(fmt.Sprintf("10.%d.0.0/24", w), fmt.Sprintf("s%d", i), "r")
				s.PutTriplet(tr, store.Attempt{First: start, Last: start, Count: uint32(i + 1)})
				s.Add("shared", 1)
				s.Put("k", fmt.Sprintf("%d-%d", w, i), []byte{byte(i)}, time.Time{})
				if i%50 == 0 {
					s.AddTrap(fmt.Sprintf("t%d@example.org", w))
					if err := s.Flush(ctx); err != nil {
						t.Errorf("Flush: %v", err)
					}
				}
				if i%3 == 0 {
					s.DeleteHost(p)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	if m, _ := s.Counters(); m["shared"] != workers*ops {
		t.Errorf("counter = %d, want %d", m["shared"], workers*ops)
	}
	hosts := 0
	s.Hosts(func(store.Host) bool { hosts++; return true })
	if want := workers * (ops - (ops+2)/3); hosts != want {
		t.Errorf("%d hosts, want %d", hosts, want)
	}
	for w := range workers {
		for i := range ops {
			tr := trip(fmt.Sprintf("10.%d.0.0/24", w), fmt.Sprintf("s%d", i), "r")
			if a, ok, _ := s.Triplet(tr); !ok || a.Count != uint32(i+1) {
				t.Fatalf("Triplet(%v) = %+v, %v", tr, a, ok)
			}
		}
	}
	if got := scan(t, s, "k"); len(got) != workers*ops {
		t.Errorf("%d records, want %d", len(got), workers*ops)
	}
	if tr, _ := s.Traps(); len(tr) != workers {
		t.Errorf("%d traps, want %d", len(tr), workers)
	}
}
