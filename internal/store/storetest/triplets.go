package storetest

import (
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
)

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
