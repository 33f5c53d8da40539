package reputation

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"moat/internal/store/bolt"
)

func TestCounter(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	nets, asns := NewCounter(st, "net", time.Hour), NewCounter(st, "asn", time.Hour)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	steps := []struct {
		c    *Counter
		key  string
		host string
		at   time.Duration
		want int
	}{
		{nets, "192.0.2.0/24", "192.0.2.1", 0, 1},
		{nets, "192.0.2.0/24", "::ffff:192.0.2.1", time.Minute, 1}, // same host again, IPv4-mapped
		{nets, "192.0.2.0/24", "192.0.2.2", 2 * time.Minute, 2},
		{asns, "192.0.2.0/24", "192.0.2.3", 2 * time.Minute, 1},       // another counter's key of the same name
		{nets, "198.51.100.0/24", "198.51.100.1", 3 * time.Minute, 1}, // another key
		{nets, "192.0.2.0/24", "192.0.2.3", 90 * time.Minute, 1},      // .1 (last seen at 1m) and .2 (2m) left the window
	}
	for i, s := range steps {
		got, err := s.c.Add(s.key, a(s.host), t0.Add(s.at))
		if err != nil || got != s.want {
			t.Errorf("step %d: Add(%s, %s) = %d, %v, want %d", i, s.key, s.host, got, err, s.want)
		}
	}
	if err := nets.Reset("192.0.2.0/24"); err != nil {
		t.Fatal(err)
	}
	if got, _ := nets.Add("192.0.2.0/24", a("192.0.2.9"), t0.Add(91*time.Minute)); got != 1 {
		t.Errorf("after Reset: %d, want 1", got)
	}
	nets.MaxPerKey = 2
	for i := range 10 {
		if got, _ := nets.Add("10.0.0.0/24", netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t0); got > 2 {
			t.Fatalf("%d hosts counted under one key, want at most 2", got)
		}
	}
}
