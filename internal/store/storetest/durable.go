package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
)

// RunDurable checks that what was written survives Close and reopening.
// open makes a new, empty store; reopen opens again the storage that the
// most recent open (or reopen) used, after the suite has closed it. Both
// get the clock the store must use.
func RunDurable(t *testing.T, open, reopen Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open, reopen func(*clock.Fake) store.Store)
	}{
		{"FlushedSurvives", testFlushedSurvives},
		{"CloseFlushes", testCloseFlushes},
		{"DeletionsSurvive", testDeletionsSurvive},
		{"ExpiryAfterReopen", testExpiryAfterReopen},
		{"ReopenAndWrite", testReopenAndWrite},
		{"TallySurvives", testTallySurvives},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var last store.Store
			closeLast := func() {
				if last != nil {
					if err := last.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
					last = nil
				}
			}
			t.Cleanup(closeLast)
			tt.fn(t,
				func(c *clock.Fake) store.Store { last = open(t, c); return last },
				func(c *clock.Fake) store.Store { closeLast(); last = reopen(t, c); return last })
		})
	}
}

// fill writes one of everything and returns what a reader should see.
type contents struct {
	hosts    []store.Host
	triplets map[store.Triplet]store.Attempt
	traps    []string
	counters map[string]int64
	records  map[string][]rec
}

func fill(t *testing.T, s store.Store) contents {
	t.Helper()
	want := contents{
		hosts: []store.Host{
			{Prefix: pfx("192.0.2.1/32"), Class: store.White, Reason: "greylist retry", First: start.Add(-time.Hour), Last: start, Expires: start.Add(36 * 24 * time.Hour)},
			{Prefix: pfx("198.51.100.0/24"), Class: store.Black, Reason: "operator"},
			{Prefix: pfx("2001:db8::5/128"), Class: store.Black, Source: store.SourceTrap, Reason: "trap hit <t@example.org>", First: start, Last: start},
			{Prefix: pfx("2001:db8:1::/48"), Class: store.Grey, Reason: "import"},
		},
		triplets: map[store.Triplet]store.Attempt{},
		traps:    []string{"a@example.org", "b@example.org"},
		counters: map[string]int64{"tarpit_seconds": 123, "trap_hits:<a@example.org>": 2, "neg": -7},
		records: map[string][]rec{
			"candidate": {{"x@example.org", "3"}, {"y@example.org", ""}},
			"karma":     {{"192.0.2.1", "\x00\xff"}},
		},
	}
	put(t, s, want.hosts...)
	for i := range 500 {
		tr := trip(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), fmt.Sprintf("s%d@example.org", i), "r@example.net")
		if i%7 == 0 {
			tr = trip(fmt.Sprintf("2001:db8:%x::/64", i), "", "r@example.net")
		}
		a := store.Attempt{First: start, Last: start.Add(time.Duration(i) * time.Second), Count: uint32(i + 1), Expires: start.Add(30 * 24 * time.Hour)}
		if err := s.PutTriplet(tr, a); err != nil {
			t.Fatal(err)
		}
		want.triplets[tr] = a
	}
	for _, a := range want.traps {
		if err := s.AddTrap(a); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range want.counters {
		// Twice, so a store that wrote only the last delta is caught.
		if err := s.Add(k, v-1); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(k, 1); err != nil {
			t.Fatal(err)
		}
	}
	for kind, rs := range want.records {
		for _, r := range rs {
			if err := s.Put(kind, r.k, []byte(r.v), start.Add(24*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return want
}

func check(t *testing.T, s store.Store, want contents) {
	t.Helper()
	for _, h := range want.hosts {
		got, ok, err := s.Host(h.Prefix)
		if err != nil || !ok || !sameHost(got, h) {
			t.Errorf("Host(%v) = %v, %v, %v; want %v", h.Prefix, fmtHost(got), ok, err, fmtHost(h))
		}
	}
	n := 0
	s.Hosts(func(store.Host) bool { n++; return true })
	if n != len(want.hosts) {
		t.Errorf("Hosts gave %d entries, want %d", n, len(want.hosts))
	}
	for _, h := range want.hosts {
		wantLookup(t, s, h.Prefix.Addr().String(), h.Prefix.String())
	}
	for tr, a := range want.triplets {
		got, ok, err := s.Triplet(tr)
		if err != nil || !ok || !sameAttempt(got, a) {
			t.Fatalf("Triplet(%v) = %+v, %v, %v; want %+v", tr, got, ok, err, a)
		}
	}
	wantTraps(t, s, want.traps...)
	got, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want.counters) {
		t.Errorf("Counters() = %v, want %v", got, want.counters)
	}
	for k, v := range want.counters {
		if got[k] != v {
			t.Errorf("counter %s = %d, want %d", k, got[k], v)
		}
	}
	for kind, rs := range want.records {
		if got := scan(t, s, kind); !slices.EqualFunc(got, rs, func(a, b rec) bool { return a.k == b.k && bytes.Equal([]byte(a.v), []byte(b.v)) }) {
			t.Errorf("Scan(%s) = %q, want %q", kind, got, rs)
		}
	}
}

func testFlushedSurvives(t *testing.T, open, reopen func(*clock.Fake) store.Store) {
	c := clock.NewFake(start)
	s := open(c)
	want := fill(t, s)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	check(t, reopen(c), want)
}

func testCloseFlushes(t *testing.T, open, reopen func(*clock.Fake) store.Store) {
	c := clock.NewFake(start)
	want := fill(t, open(c))
	// No Flush: reopen closes the store first, and Close must commit.
	check(t, reopen(c), want)
}

func testDeletionsSurvive(t *testing.T, open, reopen func(*clock.Fake) store.Store) {
	c := clock.NewFake(start)
	s := open(c)
	want := fill(t, s)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteHost(want.hosts[1].Prefix); err != nil {
		t.Fatal(err)
	}
	want.hosts = slices.Delete(want.hosts, 1, 2)
	if err := s.DelTrap("a@example.org"); err != nil {
		t.Fatal(err)
	}
	want.traps = want.traps[1:]
	if err := s.Delete("karma", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	delete(want.records, "karma")
	// An overwrite after a flush must win over the flushed value.
	h := want.hosts[0]
	h.Class, h.Reason = store.Black, "overwritten"
	put(t, s, h)
	want.hosts[0] = h
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = reopen(c)
	check(t, s, want)
	if got := scan(t, s, "karma"); len(got) != 0 {
		t.Errorf("deleted record back after reopen: %v", got)
	}
	if _, ok, _ := s.Host(pfx("198.51.100.0/24")); ok {
		t.Errorf("deleted host back after reopen")
	}
}

func testExpiryAfterReopen(t *testing.T, open, reopen func(*clock.Fake) store.Store) {
	c := clock.NewFake(start)
	s := open(c)
	exp := start.Add(time.Hour)
	put(t, s,
		store.Host{Prefix: pfx("192.0.2.1/32"), Class: store.White, Expires: exp},
		store.Host{Prefix: pfx("192.0.2.2/32"), Class: store.White, Expires: exp.Add(time.Hour)})
	short := trip("192.0.2.0/24", "a", "b")
	s.PutTriplet(short, store.Attempt{Count: 1, Expires: exp})
	s.Put("k", "short", []byte("s"), exp)
	s.Put("k", "long", []byte("l"), exp.Add(time.Hour))
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Set(exp)
	s = reopen(c)
	wantLookup(t, s, "192.0.2.1", "")
	wantLookup(t, s, "192.0.2.2", "192.0.2.2/32")
	if _, ok, _ := s.Triplet(short); ok {
		t.Errorf("expired triplet back after reopen")
	}
	wantRecord(t, s, "k", "short", "", false)
	wantRecord(t, s, "k", "long", "l", true)
	// Still gone after another round (whatever purge ran in between).
	c.Advance(2 * time.Hour)
	s = reopen(c)
	wantLookup(t, s, "192.0.2.2", "")
	if got := scan(t, s, "k"); len(got) != 0 {
		t.Errorf("expired records back after reopen: %v", got)
	}
}

func testReopenAndWrite(t *testing.T, open, reopen func(*clock.Fake) store.Store) {
	c := clock.NewFake(start)
	s := open(c)
	s.Add("n", 5)
	tr := trip("192.0.2.0/24", "a", "b")
	s.PutTriplet(tr, store.Attempt{First: start, Last: start, Count: 1})
	s = reopen(c)
	s.Add("n", 5)
	s.PutTriplet(tr, store.Attempt{First: start, Last: start.Add(time.Minute), Count: 2})
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = reopen(c)
	if m, _ := s.Counters(); m["n"] != 10 {
		t.Errorf("counter after two sessions = %d, want 10", m["n"])
	}
	if a, ok, _ := s.Triplet(tr); !ok || a.Count != 2 || !a.Last.Equal(start.Add(time.Minute)) {
		t.Errorf("triplet after two sessions = %+v, %v", a, ok)
	}
}
