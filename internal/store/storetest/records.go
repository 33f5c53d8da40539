package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
)

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
