package main

import (
	"net/netip"
	"testing"
	"time"
)

func TestSources(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		size uint32
		idx  []int
		want []string
	}{
		{"127.64.0.0/10", 1 << 22 / 256 * 254, []int{0, 253, 254, 508}, []string{"127.64.0.1", "127.64.0.254", "127.64.1.1", "127.64.2.1"}},
		{"127.0.0.0/24", 254, []int{0, 253, 254}, []string{"127.0.0.1", "127.0.0.254", "127.0.0.1"}},
		{"127.0.0.0/30", 3, []int{0, 2, 3}, []string{"127.0.0.1", "127.0.0.3", "127.0.0.1"}},
		{"127.1.2.3/32", 1, []int{0, 5}, []string{"127.1.2.3", "127.1.2.3"}},
	} {
		s, err := parseSources(tc.cidr)
		if err != nil {
			t.Fatalf("%s: %v", tc.cidr, err)
		}
		if s.size != tc.size {
			t.Errorf("%s: size %d, want %d", tc.cidr, s.size, tc.size)
		}
		for i, idx := range tc.idx {
			if got := s.addr(idx); got != netip.MustParseAddr(tc.want[i]) {
				t.Errorf("%s: addr(%d) = %s, want %s", tc.cidr, idx, got, tc.want[i])
			}
		}
	}
	for _, bad := range []string{"10.0.0.0/8", "0.0.0.0/0", "::1/128", "127.0.0.0/33", "x"} {
		if _, err := parseSources(bad); err == nil {
			t.Errorf("parseSources(%q) accepted a non-loopback or invalid prefix", bad)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:25": true, "[::1]:25": true, "192.0.2.1:25": false, "localhost:25": false,
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{0: 1, 50: 51, 99: 99, 100: 100} {
		if got := percentile(ds, p); got != want {
			t.Errorf("percentile(1..100, %v) = %d, want %d", p, got, want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}
