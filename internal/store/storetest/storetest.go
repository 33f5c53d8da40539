// Package storetest is the conformance suite every store.Store
// implementation passes: the semantics written in store.go, checked the
// same way for the embedded bbolt store and for Redis.
//
// It only calls the Store interface; it never looks at how an
// implementation keeps its data. Times it stores are whole seconds, so an
// implementation may keep times to the second.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
)

// Open makes a new, empty store that uses c for expiry.
type Open func(t *testing.T, c *clock.Fake) store.Store

// start is where every fake clock of the suite begins: a whole second, so
// that implementations keeping seconds round-trip every time exactly.
var start = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Run runs the conformance suite against stores made by open. The fake
// clock passed to open is the one the store must use for expiry; the suite
// advances it. open is called once per subtest, and the suite closes the
// store when the subtest ends.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, c *clock.Fake)
	}{
		{"HostRoundTrip", testHostRoundTrip},
		{"HostOverwrite", testHostOverwrite},
		{"HostInvalidPrefix", testHostInvalidPrefix},
		{"LookupMostSpecific", testLookupMostSpecific},
		{"LookupFamilies", testLookupFamilies},
		{"HostExact", testHostExact},
		{"DeleteHost", testDeleteHost},
		{"HostsIteration", testHostsIteration},
		{"HostsReentrant", testHostsReentrant},
		{"HostExpiry", testHostExpiry},
		{"TripletRoundTrip", testTripletRoundTrip},
		{"TripletDistinct", testTripletDistinct},
		{"TripletExpiry", testTripletExpiry},
		{"Traps", testTraps},
		{"Counters", testCounters},
		{"Records", testRecords},
		{"RecordScan", testRecordScan},
		{"RecordExpiry", testRecordExpiry},
		{"RecordCopies", testRecordCopies},
		{"Flush", testFlush},
		{"Concurrency", testConcurrency},
		{"UpdateHost", testUpdateHost},
		{"UpdateHostAtomic", testUpdateHostAtomic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clock.NewFake(start)
			s := open(t, c)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s, c)
		})
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func sameTime(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() && b.IsZero()
	}
	return a.Equal(b)
}

func sameHost(a, b store.Host) bool {
	return a.Prefix == b.Prefix && a.Class == b.Class && a.Source == b.Source && a.Reason == b.Reason &&
		sameTime(a.First, b.First) && sameTime(a.Last, b.Last) && sameTime(a.Expires, b.Expires)
}

func sameAttempt(a, b store.Attempt) bool {
	return a.Count == b.Count && sameTime(a.First, b.First) && sameTime(a.Last, b.Last) && sameTime(a.Expires, b.Expires)
}

func fmtHost(h store.Host) string {
	return fmt.Sprintf("{%v %v/%v %q first=%v last=%v expires=%v}", h.Prefix, h.Class, h.Source, h.Reason, h.First.UTC(), h.Last.UTC(), h.Expires.UTC())
}

func put(t *testing.T, s store.Store, hs ...store.Host) {
	t.Helper()
	for _, h := range hs {
		if err := s.PutHost(h); err != nil {
			t.Fatalf("PutHost(%v): %v", h.Prefix, err)
		}
	}
}

func host(p, reason string, c store.Class) store.Host {
	return store.Host{Prefix: pfx(p), Class: c, Reason: reason, First: start.Add(-time.Hour), Last: start}
}

// wantLookup checks that Lookup(addr) finds the entry stored under want,
// or nothing if want is "".
func wantLookup(t *testing.T, s store.Store, addr, want string) {
	t.Helper()
	h, ok, err := s.Lookup(ip(addr))
	if err != nil {
		t.Fatalf("Lookup(%s): %v", addr, err)
	}
	switch {
	case want == "" && ok:
		t.Errorf("Lookup(%s) = %v, want nothing", addr, fmtHost(h))
	case want != "" && !ok:
		t.Errorf("Lookup(%s) found nothing, want %s", addr, want)
	case want != "" && h.Prefix != pfx(want):
		t.Errorf("Lookup(%s) = %v, want the entry of %s", addr, h.Prefix, want)
	}
}

func testHostRoundTrip(t *testing.T, s store.Store, c *clock.Fake) {
	hs := []store.Host{
		{Prefix: pfx("192.0.2.1/32"), Class: store.White, Source: store.SourceAccepted, Reason: "greylist retry",
			First: start.Add(-48 * time.Hour), Last: start, Expires: start.Add(36 * 24 * time.Hour)},
		{Prefix: pfx("2001:db8::1/128"), Class: store.Black, Source: store.SourceRelay, Reason: "trap hit <trap@example.org>",
			First: start, Last: start},
		{Prefix: pfx("198.51.100.0/24"), Class: store.Grey, Reason: ""},
		{Prefix: pfx("2001:db8:1::/48"), Class: store.Black, Reason: "operator: ünïcode reason",
			First: start.Add(-time.Second), Last: start.Add(time.Second), Expires: start.Add(time.Hour)},
	}
	put(t, s, hs...)
	for _, want := range hs {
		got, ok, err := s.Host(want.Prefix)
		if err != nil || !ok {
			t.Fatalf("Host(%v) = _, %v, %v; want found", want.Prefix, ok, err)
		}
		if !sameHost(got, want) {
			t.Errorf("Host(%v)\n got %v\nwant %v", want.Prefix, fmtHost(got), fmtHost(want))
		}
	}
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"198.51.100.77", "198.51.100.0/24"},
		{"2001:db8:1:ffff::5", "2001:db8:1::/48"},
		// An IPv4-mapped IPv6 address is the IPv4 host (see store.HostPrefix).
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"192.0.2.2", ""},
		{"2001:db8::2", ""},
	} {
		wantLookup(t, s, tc.addr, tc.want)
	}
	got, ok, err := s.Lookup(ip("192.0.2.1"))
	if err != nil || !ok || !sameHost(got, hs[0]) {
		t.Errorf("Lookup(192.0.2.1) = %v, %v, %v; want %v", fmtHost(got), ok, err, fmtHost(hs[0]))
	}
	if _, ok, err := s.Host(pfx("192.0.2.2/32")); ok || err != nil {
		t.Errorf("Host(192.0.2.2/32) = _, %v, %v; want not found", ok, err)
	}
}

func testHostOverwrite(t *testing.T, s store.Store, c *clock.Fake) {
	put(t, s, host("192.0.2.9/32", "first", store.Grey))
	second := store.Host{Prefix: pfx("192.0.2.9/32"), Class: store.Black, Reason: "second", Last: start.Add(time.Minute)}
	put(t, s, second)
	got, ok, err := s.Host(second.Prefix)
	if err != nil || !ok || !sameHost(got, second) {
		t.Errorf("after overwrite Host = %v, %v, %v; want %v", fmtHost(got), ok, err, fmtHost(second))
	}
	n := 0
	if err := s.Hosts(func(store.Host) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("Hosts saw %d entries after overwriting one, want 1", n)
	}
}

func testHostInvalidPrefix(t *testing.T, s store.Store, c *clock.Fake) {
	if err := s.PutHost(store.Host{Class: store.Black}); err == nil {
		t.Errorf("PutHost with the zero prefix succeeded, want an error")
	}
	if _, ok, err := s.Lookup(netip.Addr{}); ok || err != nil {
		t.Errorf("Lookup(zero Addr) = _, %v, %v; want not found, no error", ok, err)
	}
}

func testLookupMostSpecific(t *testing.T, s store.Store, c *clock.Fake) {
	put(t, s,
		host("10.0.0.0/8", "eight", store.Black),
		host("10.1.0.0/16", "sixteen", store.White),
		host("10.1.2.0/24", "twentyfour", store.Grey),
		host("10.1.2.3/32", "host", store.White),
		host("2001:db8::/32", "v6 32", store.Black),
		host("2001:db8:1::/48", "v6 48", store.White),
		host("2001:db8:1:2::/64", "v6 64", store.Grey),
		host("2001:db8:1:2::3/128", "v6 host", store.White),
	)
	for _, tc := range []struct{ addr, want string }{
		{"10.1.2.3", "10.1.2.3/32"},
		{"10.1.2.4", "10.1.2.0/24"},
		{"10.1.3.1", "10.1.0.0/16"},
		{"10.2.0.1", "10.0.0.0/8"},
		{"11.0.0.1", ""},
		{"2001:db8:1:2::3", "2001:db8:1:2::3/128"},
		{"2001:db8:1:2::4", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1::/48"},
		{"2001:db8:2::1", "2001:db8::/32"},
		{"2001:db9::1", ""},
	} {
		wantLookup(t, s, tc.addr, tc.want)
	}
	h, _, _ := s.Lookup(ip("10.1.3.1"))
	if h.Reason != "sixteen" || h.Class != store.White {
		t.Errorf("Lookup(10.1.3.1) = %v, want the /16's class and reason", fmtHost(h))
	}
	// Deleting the most specific entries uncovers the wider ones.
	for _, p := range []string{"10.1.2.3/32", "10.1.2.0/24"} {
		if err := s.DeleteHost(pfx(p)); err != nil {
			t.Fatalf("DeleteHost(%s): %v", p, err)
		}
	}
	wantLookup(t, s, "10.1.2.3", "10.1.0.0/16")
}

func testLookupFamilies(t *testing.T, s store.Store, c *clock.Fake) {
	put(t, s, host("0.0.0.0/0", "all v4", store.Black))
	wantLookup(t, s, "203.0.113.5", "0.0.0.0/0")
	wantLookup(t, s, "2001:db8::5", "")
	put(t, s, host("::/0", "all v6", store.Grey))
	wantLookup(t, s, "2001:db8::5", "::/0")
	wantLookup(t, s, "203.0.113.5", "0.0.0.0/0")
}

func testHostExact(t *testing.T, s store.Store, c *clock.Fake) {
	put(t, s, host("10.0.0.0/8", "eight", store.Black), host("10.1.0.0/16", "sixteen", store.White))
	for _, tc := range []struct {
		p      string
		reason string
	}{
		{"10.0.0.0/8", "eight"},
		{"10.1.0.0/16", "sixteen"},
		{"10.1.2.0/24", ""},
		{"10.1.0.0/17", ""},
		{"10.1.0.1/32", ""},
	} {
		h, ok, err := s.Host(pfx(tc.p))
		if err != nil {
			t.Fatalf("Host(%s): %v", tc.p, err)
		}
		if ok != (tc.reason != "") || h.Reason != tc.reason {
			t.Errorf("Host(%s) = %v, %v; want reason %q", tc.p, fmtHost(h), ok, tc.reason)
		}
	}
}

func testDeleteHost(t *testing.T, s store.Store, c *clock.Fake) {
	put(t, s, host("192.0.2.1/32", "h", store.Black), host("2001:db8::/64", "n", store.Black))
	for _, p := range []string{"192.0.2.1/32", "2001:db8::/64"} {
		if err := s.DeleteHost(pfx(p)); err != nil {
			t.Errorf("DeleteHost(%s): %v", p, err)
		}
		if _, ok, _ := s.Host(pfx(p)); ok {
			t.Errorf("Host(%s) still found after DeleteHost", p)
		}
		if err := s.DeleteHost(pfx(p)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second DeleteHost(%s) = %v, want ErrNotFound", p, err)
		}
	}
	wantLookup(t, s, "192.0.2.1", "")
	wantLookup(t, s, "2001:db8::1", "")
	if err := s.DeleteHost(pfx("203.0.113.0/24")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteHost of a never stored prefix = %v, want ErrNotFound", err)
	}
}

func testHostsIteration(t *testing.T, s store.Store, c *clock.Fake) {
	want := map[netip.Prefix]bool{}
	for i := range 50 {
		h := host(fmt.Sprintf("192.0.2.%d/32", i), fmt.Sprint(i), store.Black)
		put(t, s, h)
		want[h.Prefix] = true
	}
	for _, p := range []string{"198.51.100.0/24", "2001:db8::/32", "2001:db8::7/128"} {
		put(t, s, host(p, p, store.White))
		want[pfx(p)] = true
	}
	got := map[netip.Prefix]bool{}
	err := s.Hosts(func(h store.Host) bool {
		if got[h.Prefix] {
			t.Errorf("Hosts gave %v twice", h.Prefix)
		}
		got[h.Prefix] = true
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("Hosts gave %d entries, want %d", len(got), len(want))
	}
	for p := range want {
		if !got[p] {
			t.Errorf("Hosts did not give %v", p)
		}
	}
	calls := 0
	if err := s.Hosts(func(store.Host) bool { calls++; return calls < 3 }); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Errorf("Hosts called fn %d times after it returned false on the 3rd, want 3", calls)
	}
}

// testHostsReentrant checks that fn may call the store, as "delete every
// black host" does.
func testHostsReentrant(t *testing.T, s store.Store, c *clock.Fake) {
	for i := range 20 {
		cl := store.White
		if i%2 == 0 {
			cl = store.Black
		}
		put(t, s, host(fmt.Sprintf("192.0.2.%d/32", i), "", cl))
	}
	err := s.Hosts(func(h store.Host) bool {
		if h.Class == store.Black {
			if err := s.DeleteHost(h.Prefix); err != nil {
				t.Errorf("DeleteHost(%v) inside Hosts: %v", h.Prefix, err)
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	s.Hosts(func(h store.Host) bool {
		n++
		if h.Class == store.Black {
			t.Errorf("%v is still there", h.Prefix)
		}
		return true
	})
	if n != 10 {
		t.Errorf("%d hosts left, want 10", n)
	}
}

func testHostExpiry(t *testing.T, s store.Store, c *clock.Fake) {
	exp := start.Add(time.Hour)
	short := store.Host{Prefix: pfx("192.0.2.1/32"), Class: store.White, Reason: "short", Expires: exp}
	shortNet := store.Host{Prefix: pfx("2001:db8:1::/48"), Class: store.White, Reason: "short net", Expires: exp}
	put(t, s, short, shortNet,
		host("192.0.2.0/24", "forever", store.Black),
		host("2001:db8::/32", "forever v6", store.Black),
		store.Host{Prefix: pfx("192.0.2.2/32"), Reason: "gone", Expires: exp},
		store.Host{Prefix: pfx("192.0.2.3/32"), Reason: "longer", Expires: exp.Add(time.Hour)},
	)
	c.Set(exp.Add(-time.Second))
	wantLookup(t, s, "192.0.2.1", "192.0.2.1/32")
	wantLookup(t, s, "2001:db8:1::1", "2001:db8:1::/48")

	c.Set(exp) // Expires is the first instant the entry is gone.
	wantLookup(t, s, "192.0.2.1", "192.0.2.0/24")
	wantLookup(t, s, "2001:db8:1::1", "2001:db8::/32")
	wantLookup(t, s, "192.0.2.3", "192.0.2.3/32")
	for _, p := range []netip.Prefix{short.Prefix, shortNet.Prefix} {
		if h, ok, err := s.Host(p); ok || err != nil {
			t.Errorf("Host(%v) after expiry = %v, %v, %v; want not found", p, fmtHost(h), ok, err)
		}
	}
	s.Hosts(func(h store.Host) bool {
		if !h.Expires.IsZero() && !h.Expires.After(exp) {
			t.Errorf("Hosts gave expired %v", fmtHost(h))
		}
		return true
	})
	if err := s.DeleteHost(pfx("192.0.2.2/32")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteHost of an expired entry = %v, want ErrNotFound", err)
	}

	// Storing it again brings it back.
	short.Expires = exp.Add(24 * time.Hour)
	put(t, s, short)
	wantLookup(t, s, "192.0.2.1", "192.0.2.1/32")

	c.Advance(48 * time.Hour)
	wantLookup(t, s, "192.0.2.1", "192.0.2.0/24")
	wantLookup(t, s, "192.0.2.3", "192.0.2.0/24")
}

func trip(net, sender, rcpt string) store.Triplet {
	return store.Triplet{Net: pfx(net), Sender: sender, Rcpt: rcpt}
}

func testTripletRoundTrip(t *testing.T, s store.Store, c *clock.Fake) {
	tr := trip("192.0.2.0/24", "alice@example.org", "bob@example.net")
	if _, ok, err := s.Triplet(tr); ok || err != nil {
		t.Fatalf("Triplet of an empty store = _, %v, %v; want not found", ok, err)
	}
	a := store.Attempt{First: start, Last: start, Count: 1, Expires: start.Add(4 * time.Hour)}
	if err := s.PutTriplet(tr, a); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Triplet(tr)
	if err != nil || !ok || !sameAttempt(got, a) {
		t.Fatalf("Triplet = %+v, %v, %v; want %+v", got, ok, err, a)
	}
	a2 := store.Attempt{First: start, Last: start.Add(10 * time.Minute), Count: 2, Expires: start.Add(36 * 24 * time.Hour)}
	if err := s.PutTriplet(tr, a2); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.Triplet(tr); err != nil || !ok || !sameAttempt(got, a2) {
		t.Errorf("Triplet after update = %+v, %v, %v; want %+v", got, ok, err, a2)
	}
	// Zero times, the null sender, IPv6, a large count.
	for _, tc := range []struct {
		t store.Triplet
		a store.Attempt
	}{
		{trip("2001:db8:1:2::/64", "", "postmaster@example.net"), store.Attempt{Count: 1}},
		{trip("198.51.100.0/24", "a@b", "c@d"), store.Attempt{First: start, Last: start.Add(time.Hour), Count: 1<<32 - 1}},
	} {
		if err := s.PutTriplet(tc.t, tc.a); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := s.Triplet(tc.t); err != nil || !ok || !sameAttempt(got, tc.a) {
			t.Errorf("Triplet(%v) = %+v, %v, %v; want %+v", tc.t, got, ok, err, tc.a)
		}
	}
}

func testTripletDistinct(t *testing.T, s store.Store, c *clock.Fake) {
	ts := []store.Triplet{
		trip("192.0.2.0/24", "a@example.org", "b@example.net"),
		trip("192.0.3.0/24", "a@example.org", "b@example.net"),
		trip("192.0.2.0/25", "a@example.org", "b@example.net"),
		trip("2001:db8::/64", "a@example.org", "b@example.net"),
		trip("192.0.2.0/24", "", "b@example.net"),
		trip("192.0.2.0/24", "a@example.org", "c@example.net"),
		// The fields must not run together.
		trip("192.0.2.0/24", "ab", "c"),
		trip("192.0.2.0/24", "a", "bc"),
		trip("192.0.2.0/24", "b@example.net", "a@example.org"),
	}
	for i, tr := range ts {
		if err := s.PutTriplet(tr, store.Attempt{First: start, Last: start, Count: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, tr := range ts {
		got, ok, err := s.Triplet(tr)
		if err != nil || !ok || got.Count != uint32(i+1) {
			t.Errorf("Triplet(%v) = count %d, %v, %v; want count %d", tr, got.Count, ok, err, i+1)
		}
	}
}

func testTripletExpiry(t *testing.T, s store.Store, c *clock.Fake) {
	short := trip("192.0.2.0/24", "a@example.org", "b@example.net")
	long := trip("192.0.2.0/24", "a@example.org", "c@example.net")
	never := trip("192.0.2.0/24", "a@example.org", "d@example.net")
	exp := start.Add(4 * time.Hour)
	for tr, e := range map[store.Triplet]time.Time{short: exp, long: exp.Add(time.Hour), never: {}} {
		if err := s.PutTriplet(tr, store.Attempt{First: start, Last: start, Count: 1, Expires: e}); err != nil {
			t.Fatal(err)
		}
	}
	c.Set(exp.Add(-time.Second))
	if _, ok, _ := s.Triplet(short); !ok {
		t.Errorf("triplet gone a second before it expires")
	}
	c.Set(exp)
	if a, ok, err := s.Triplet(short); ok || err != nil {
		t.Errorf("expired triplet = %+v, %v, %v; want not found", a, ok, err)
	}
	if _, ok, _ := s.Triplet(long); !ok {
		t.Errorf("triplet expiring later is gone too")
	}
	c.Advance(10 * 365 * 24 * time.Hour)
	if _, ok, _ := s.Triplet(long); ok {
		t.Errorf("triplet still there long after it expired")
	}
	if _, ok, _ := s.Triplet(never); !ok {
		t.Errorf("triplet with zero Expires is gone")
	}
	// A fresh attempt brings an expired triplet back.
	now := c.Now()
	a := store.Attempt{First: now, Last: now, Count: 1, Expires: now.Add(time.Hour)}
	if err := s.PutTriplet(short, a); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.Triplet(short); !ok || !sameAttempt(got, a) {
		t.Errorf("re-stored triplet = %+v, %v; want %+v", got, ok, a)
	}
}

func wantTraps(t *testing.T, s store.Store, want ...string) {
	t.Helper()
	got, err := s.Traps()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || !slices.Equal(got, want) {
		t.Errorf("Traps() = %q, want %q", got, want)
	}
}

func testTraps(t *testing.T, s store.Store, c *clock.Fake) {
	wantTraps(t, s)
	for _, a := range []string{"zed@example.org", "abel@example.org", "mid@example.net", "abel@example.org"} {
		if err := s.AddTrap(a); err != nil {
			t.Fatalf("AddTrap(%s): %v", a, err)
		}
	}
	wantTraps(t, s, "abel@example.org", "mid@example.net", "zed@example.org")
	if err := s.DelTrap("mid@example.net"); err != nil {
		t.Errorf("DelTrap: %v", err)
	}
	wantTraps(t, s, "abel@example.org", "zed@example.org")
	if err := s.DelTrap("mid@example.net"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DelTrap = %v, want ErrNotFound", err)
	}
	if err := s.DelTrap("never@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DelTrap of an unknown address = %v, want ErrNotFound", err)
	}
	// The returned slice is the caller's.
	got, _ := s.Traps()
	got[0] = "changed"
	wantTraps(t, s, "abel@example.org", "zed@example.org")
}

func testCounters(t *testing.T, s store.Store, c *clock.Fake) {
	got, err := s.Counters()
	if err != nil || len(got) != 0 {
		t.Fatalf("Counters of an empty store = %v, %v", got, err)
	}
	adds := []struct {
		name  string
		delta int64
	}{
		{"tarpit_seconds", 30}, {"tarpit_seconds", 12}, {"trap_hits:<a@b>", 1},
		{"negative", -5}, {"negative", 2}, {"big", 1 << 40}, {"zero", 0},
	}
	for _, a := range adds {
		if err := s.Add(a.name, a.delta); err != nil {
			t.Fatalf("Add(%s, %d): %v", a.name, a.delta, err)
		}
	}
	want := map[string]int64{"tarpit_seconds": 42, "trap_hits:<a@b>": 1, "negative": -3, "big": 1 << 40, "zero": 0}
	got, err = s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counter %s = %d, want %d", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected counter %s", k)
		}
	}
	got["tarpit_seconds"] = 0
	if again, _ := s.Counters(); again["tarpit_seconds"] != 42 {
		t.Errorf("changing the map Counters returned changed the store")
	}
}

func wantRecord(t *testing.T, s store.Store, kind, key, want string, found bool) {
	t.Helper()
	v, ok, err := s.Get(kind, key)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", kind, key, err)
	}
	if ok != found || string(v) != want {
		t.Errorf("Get(%s, %s) = %q, %v; want %q, %v", kind, key, v, ok, want, found)
	}
}

func testRecords(t *testing.T, s store.Store, c *clock.Fake) {
	wantRecord(t, s, "candidate", "x@example.org", "", false)
	for _, r := range []struct{ kind, key, val string }{
		{"candidate", "x@example.org", "seen 3"},
		{"karma", "x@example.org", "\x00\x01binary\xff"},
		{"candidate", "y@example.org", ""},
	} {
		if err := s.Put(r.kind, r.key, []byte(r.val), time.Time{}); err != nil {
			t.Fatalf("Put(%s, %s): %v", r.kind, r.key, err)
		}
	}
	wantRecord(t, s, "candidate", "x@example.org", "seen 3", true)
	wantRecord(t, s, "karma", "x@example.org", "\x00\x01binary\xff", true)
	wantRecord(t, s, "candidate", "y@example.org", "", true)
	wantRecord(t, s, "other", "x@example.org", "", false)

	if err := s.Put("candidate", "x@example.org", []byte("seen 4"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	wantRecord(t, s, "candidate", "x@example.org", "seen 4", true)
	wantRecord(t, s, "karma", "x@example.org", "\x00\x01binary\xff", true)

	if err := s.Delete("candidate", "x@example.org"); err != nil {
		t.Errorf("Delete: %v", err)
	}
	wantRecord(t, s, "candidate", "x@example.org", "", false)
	wantRecord(t, s, "karma", "x@example.org", "\x00\x01binary\xff", true)
	if err := s.Delete("candidate", "x@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete("nokind", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete in an unknown kind = %v, want ErrNotFound", err)
	}
}

type rec struct{ k, v string }

func scan(t *testing.T, s store.Store, kind string) []rec {
	t.Helper()
	var got []rec
	if err := s.Scan(kind, func(k string, v []byte) bool {
		got = append(got, rec{k, string(v)})
		return true
	}); err != nil {
		t.Fatalf("Scan(%s): %v", kind, err)
	}
	slices.SortFunc(got, func(a, b rec) int { return cmpString(a.k, b.k) })
	return got
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testRecordScan(t *testing.T, s store.Store, c *clock.Fake) {
	var want []rec
	for i := range 30 {
		r := rec{fmt.Sprintf("key%02d", i), fmt.Sprintf("val%d", i)}
		want = append(want, r)
		if err := s.Put("a", r.k, []byte(r.v), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Put("b", r.k, []byte("other"), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := scan(t, s, "a"); !slices.Equal(got, want) {
		t.Errorf("Scan(a) = %v\nwant %v", got, want)
	}
	if got := scan(t, s, "nokind"); len(got) != 0 {
		t.Errorf("Scan of an unknown kind = %v, want nothing", got)
	}
	calls := 0
	s.Scan("a", func(string, []byte) bool { calls++; return calls < 5 })
	if calls != 5 {
		t.Errorf("Scan called fn %d times after it returned false on the 5th, want 5", calls)
	}
	// fn may call the store.
	err := s.Scan("b", func(k string, _ []byte) bool {
		if err := s.Delete("b", k); err != nil {
			t.Errorf("Delete(b, %s) inside Scan: %v", k, err)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := scan(t, s, "b"); len(got) != 0 {
		t.Errorf("Scan(b) after deleting all = %v", got)
	}
	if got := scan(t, s, "a"); len(got) != 30 {
		t.Errorf("deleting kind b changed kind a: %d records", len(got))
	}
}

func testRecordExpiry(t *testing.T, s store.Store, c *clock.Fake) {
	exp := start.Add(time.Hour)
	s.Put("k", "short", []byte("s"), exp)
	s.Put("k", "long", []byte("l"), exp.Add(time.Hour))
	s.Put("k", "never", []byte("n"), time.Time{})
	s.Put("k", "gone", []byte("g"), exp)
	c.Set(exp.Add(-time.Second))
	wantRecord(t, s, "k", "short", "s", true)
	c.Set(exp)
	wantRecord(t, s, "k", "short", "", false)
	wantRecord(t, s, "k", "long", "l", true)
	if got, want := scan(t, s, "k"), []rec{{"long", "l"}, {"never", "n"}}; !slices.Equal(got, want) {
		t.Errorf("Scan after expiry = %v, want %v", got, want)
	}
	if err := s.Delete("k", "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete of an expired record = %v, want ErrNotFound", err)
	}
	c.Advance(365 * 24 * time.Hour)
	if got, want := scan(t, s, "k"), []rec{{"never", "n"}}; !slices.Equal(got, want) {
		t.Errorf("Scan a year later = %v, want %v", got, want)
	}
	s.Put("k", "short", []byte("again"), c.Now().Add(time.Minute))
	wantRecord(t, s, "k", "short", "again", true)
}

// testRecordCopies checks that the store keeps its own copy of values: a
// caller reusing its buffer must not change what is stored.
func testRecordCopies(t *testing.T, s store.Store, c *clock.Fake) {
	buf := []byte("original")
	if err := s.Put("k", "x", buf, time.Time{}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "CHANGED!")
	wantRecord(t, s, "k", "x", "original", true)
	v, _, _ := s.Get("k", "x")
	copy(v, "CHANGED!")
	wantRecord(t, s, "k", "x", "original", true)
	s.Scan("k", func(_ string, v []byte) bool { copy(v, "CHANGED!"); return true })
	wantRecord(t, s, "k", "x", "original", true)
}

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

// UpdateHost reads the live entry, writes what fn returns when fn says so,
// and leaves the entry alone otherwise.
func testUpdateHost(t *testing.T, s store.Store, c *clock.Fake) {
	p := pfx("192.0.2.40/32")
	var seen []bool
	h, wrote, err := s.UpdateHost(p, func(old store.Host, ok bool) (store.Host, bool) {
		seen = append(seen, ok)
		return store.Host{Class: store.Grey, Source: store.SourceGreylist, Reason: "first", Expires: start.Add(time.Hour)}, true
	})
	if err != nil || !wrote || h.Prefix != p || h.Reason != "first" {
		t.Fatalf("first UpdateHost = %v, %v, %v; want the new entry written", h, wrote, err)
	}
	if len(seen) == 0 || seen[len(seen)-1] {
		t.Fatalf("fn saw an entry for an empty prefix")
	}
	// fn declines: the entry stays, and is what UpdateHost returns.
	h, wrote, err = s.UpdateHost(p, func(old store.Host, ok bool) (store.Host, bool) {
		if !ok || old.Reason != "first" || old.Source != store.SourceGreylist {
			t.Errorf("fn got %v, %v; want the stored entry", old, ok)
		}
		return store.Host{Class: store.White, Reason: "declined"}, false
	})
	if err != nil || wrote || h.Reason != "first" {
		t.Fatalf("declined UpdateHost = %v, %v, %v; want the old entry, not written", h, wrote, err)
	}
	if got, ok, _ := s.Host(p); !ok || got.Reason != "first" {
		t.Fatalf("after a declined update: %v, %v", got, ok)
	}
	// An expired entry is no entry.
	c.Advance(2 * time.Hour)
	_, _, err = s.UpdateHost(p, func(old store.Host, ok bool) (store.Host, bool) {
		if ok {
			t.Errorf("fn got the expired entry %v", old)
		}
		return store.Host{Class: store.Black, Source: store.SourceTrap, Reason: "second"}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.Lookup(ip("192.0.2.40")); !ok || got.Class != store.Black || got.Source != store.SourceTrap {
		t.Fatalf("Lookup after update = %v, %v; want the black trap entry", got, ok)
	}
	if _, _, err := s.UpdateHost(netip.Prefix{}, func(store.Host, bool) (store.Host, bool) { return store.Host{}, true }); err == nil {
		t.Errorf("UpdateHost of an invalid prefix: no error")
	}
}

// Concurrent updates of one host never lose one another: each appends to
// the reason what it read, as a class change reads the old evidence.
func testUpdateHostAtomic(t *testing.T, s store.Store, _ *clock.Fake) {
	p := pfx("2001:db8::40/128")
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				_, _, err := s.UpdateHost(p, func(old store.Host, ok bool) (store.Host, bool) {
					old.Reason += "x"
					return old, true
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	h, ok, err := s.Host(p)
	if err != nil || !ok || len(h.Reason) != workers*each {
		t.Fatalf("after %d concurrent updates the reason has %d marks (%v, %v); want %d", workers*each, len(h.Reason), ok, err, workers*each)
	}
}
