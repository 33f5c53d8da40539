package storetest

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
)

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
