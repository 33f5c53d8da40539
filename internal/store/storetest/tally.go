package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
)

func tallyIs(t *testing.T, s store.Store, key, member string, at time.Time, limit, want int) {
	t.Helper()
	n, err := s.Tally(key, member, at, time.Hour, limit)
	if err != nil {
		t.Fatalf("Tally(%s, %s): %v", key, member, err)
	}
	if n != want {
		t.Errorf("Tally(%s, %s, +%v) = %d, want %d", key, member, at.Sub(start), n, want)
	}
}

func testTally(t *testing.T, s store.Store, c *clock.Fake) {
	at := func(d time.Duration) time.Time { return start.Add(d) }
	tallyIs(t, s, "net:192.0.2.0/24", "192.0.2.1", at(0), 256, 1)
	tallyIs(t, s, "net:192.0.2.0/24", "192.0.2.1", at(time.Minute), 256, 1) // the same member again
	tallyIs(t, s, "net:192.0.2.0/24", "192.0.2.2", at(2*time.Minute), 256, 2)
	tallyIs(t, s, "net:198.51.100.0/24", "198.51.100.1", at(3*time.Minute), 256, 1) // another key
	// An hour after .2's note it still counts (the window includes its
	// edge); .1, last noted at 1m, does not.
	tallyIs(t, s, "net:192.0.2.0/24", "192.0.2.3", at(62*time.Minute), 256, 2)
	// A note older than the member's latest does not move it back.
	tallyIs(t, s, "net:192.0.2.0/24", "192.0.2.3", at(0), 256, 2)
	tallyIs(t, s, "net:192.0.2.0/24", "192.0.2.4", at(121*time.Minute), 256, 2) // .2 gone, .3 kept at 62m

	if err := s.DropTally("net:192.0.2.0/24"); err != nil {
		t.Fatalf("DropTally: %v", err)
	}
	tallyIs(t, s, "net:192.0.2.0/24", "192.0.2.9", at(122*time.Minute), 256, 1)
	if err := s.DropTally("never:noted"); err != nil {
		t.Errorf("DropTally of an unknown key: %v", err)
	}

	// Bounded: the latest limit members stay.
	for i := range 5 {
		tallyIs(t, s, "asn:AS64500", fmt.Sprintf("10.0.0.%d", i), at(time.Duration(i)*time.Second), 3, min(i+1, 3))
	}
	// An hour after .2's note, .0 and .1 would have left anyway; if the
	// bound had dropped the newest instead of the oldest, .3 and .4 would
	// be gone and the count 1.
	tallyIs(t, s, "asn:AS64500", "10.0.0.9", at(time.Hour+3*time.Second), 3, 3)

	for _, bad := range []struct {
		key, member string
		window      time.Duration
		limit       int
	}{{"", "m", time.Hour, 1}, {"k", "", time.Hour, 1}, {"k", "m", 0, 1}, {"k", "m", time.Hour, 0}} {
		if _, err := s.Tally(bad.key, bad.member, start, bad.window, bad.limit); err == nil {
			t.Errorf("Tally(%q, %q, %v, %d) took it", bad.key, bad.member, bad.window, bad.limit)
		}
	}
}

// testTallyConcurrent notes distinct members from many goroutines: none
// is lost, and the last count seen is the number of members.
func testTallyConcurrent(t *testing.T, s store.Store, c *clock.Fake) {
	const workers, each = 8, 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		best int
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				n, err := s.Tally("net:10.1.0.0/16", fmt.Sprintf("10.1.%d.%d", w, i), start, time.Hour, 1000)
				if err != nil {
					t.Errorf("Tally: %v", err)
					return
				}
				mu.Lock()
				best = max(best, n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if best != workers*each {
		t.Errorf("highest count seen %d, want %d", best, workers*each)
	}
}

// testTallySurvives: a flushed tally is there after reopening, and lapses
// with its window by the reopened store's clock.
func testTallySurvives(t *testing.T, open, reopen func(*clock.Fake) store.Store) {
	c := clock.NewFake(start)
	s := open(c)
	for _, m := range []string{"192.0.2.1", "192.0.2.2"} {
		if _, err := s.Tally("net:192.0.2.0/24", m, start, time.Hour, 256); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = reopen(c)
	tallyIs(t, s, "net:192.0.2.0/24", "192.0.2.3", start.Add(time.Minute), 256, 3)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Hour)
	s = reopen(c)
	tallyIs(t, s, "net:192.0.2.0/24", "192.0.2.4", start.Add(2*time.Hour), 256, 1)
}
