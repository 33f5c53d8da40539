package reputation

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"moat/internal/reputation/dnstest"
)

func TestReverseName(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":        "1.2.0.192.",
		"::ffff:192.0.2.1": "1.2.0.192.",
		"2001:db8::1":      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.",
	} {
		if got := reverseName(netip.MustParseAddr(in).Unmap()); got != want {
			t.Errorf("reverseName(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	got, err := ParseResolvConf(strings.NewReader("# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions ndots:2\nnameserver bogus\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.53:53", "[fe80::1]:53"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func sites(t *testing.T, specs ...string) []Site {
	t.Helper()
	var out []Site
	for _, s := range specs {
		site, err := ParseSite(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, site)
	}
	return out
}

func TestDNSBLScore(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t,
		"2.0.0.10.zen.test. 300 IN A 127.0.0.4",
		"2.0.0.10.zen.test. 300 IN A 127.0.0.10",
		"3.0.0.10.zen.test. 300 IN A 127.0.0.1", // outside the filter
		"4.0.0.10.wl.test. 300 IN A 127.0.10.2",
		"5.0.0.10.zen.test. 300 IN A 127.0.0.2",
		"5.0.0.10.wl.test. 300 IN A 127.0.10.3",
	)
	d, err := NewDNSBL(DNSBLConfig{
		Sites:   sites(t, "zen.test=127.0.0.[2..11]*3", "zen.test=127.0.0.4*1", "wl.test=127.0.[0..255].[1..3]*-5"),
		Servers: []string{srv.Addr},
		Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]int{
		"10.0.0.2": 4,  // two answers match the first entry once (3), the second entry too (1)
		"10.0.0.3": 0,  // 127.0.0.1 is not in [2..11]
		"10.0.0.4": -5, // allow list
		"10.0.0.5": -2, // both
		"10.0.0.9": 0,  // not listed
	} {
		sc := d.Score(context.Background(), netip.MustParseAddr(ip))
		if sc.Total != want {
			t.Errorf("Score(%s) = %d (%s), want %d", ip, sc.Total, sc, want)
		}
		if len(sc.Failed) != 0 {
			t.Errorf("Score(%s): failed zones %v", ip, sc.Failed)
		}
	}
	// Answers are cached: a second round asks nothing.
	before := srv.Queries("2.0.0.10.zen.test.")
	d.Score(context.Background(), netip.MustParseAddr("10.0.0.2"))
	d.Score(context.Background(), netip.MustParseAddr("10.0.0.9"))
	if got := srv.Queries("2.0.0.10.zen.test."); got != before || before != 1 {
		t.Errorf("queries for a cached answer: %d then %d, want 1 and 1", before, got)
	}
	if got := srv.Queries("9.0.0.10.zen.test."); got != 1 {
		t.Errorf("queries for a cached NXDOMAIN: %d, want 1", got)
	}
}

func TestDNSBLCacheExpires(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, "2.0.0.10.zen.test. 30 IN A 127.0.0.2")
	d, _ := NewDNSBL(DNSBLConfig{Sites: sites(t, "zen.test"), Servers: []string{srv.Addr}})
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	d.now = func() time.Time { return now }
	ip := netip.MustParseAddr("10.0.0.2")
	d.Score(context.Background(), ip)
	now = now.Add(29 * time.Second)
	d.Score(context.Background(), ip)
	if n := srv.Queries("2.0.0.10.zen.test."); n != 1 {
		t.Fatalf("within the TTL: %d queries, want 1", n)
	}
	now = now.Add(2 * time.Second)
	d.Score(context.Background(), ip)
	if n := srv.Queries("2.0.0.10.zen.test."); n != 2 {
		t.Fatalf("after the TTL: %d queries, want 2", n)
	}
}

func TestDNSBLCacheBounded(t *testing.T) {
	srv := dnstest.New(t)
	d, _ := NewDNSBL(DNSBLConfig{Sites: sites(t, "zen.test"), Servers: []string{srv.Addr}, CacheSize: 10})
	for i := 1; i <= 50; i++ {
		d.Score(context.Background(), netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}))
	}
	d.mu.Lock()
	n := len(d.cache)
	d.mu.Unlock()
	if n > 10 {
		t.Errorf("cache holds %d answers, want at most 10", n)
	}
}

func TestDNSBLFailingZoneIsIgnored(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, "2.0.0.10.zen.test. 300 IN A 127.0.0.2")
	srv.Fail("broken.test")
	srv.Silent("slow.test")
	d, _ := NewDNSBL(DNSBLConfig{
		Sites:   sites(t, "zen.test*3", "broken.test*5", "slow.test*5"),
		Servers: []string{srv.Addr},
		Timeout: 200 * time.Millisecond,
	})
	sc := d.Score(context.Background(), netip.MustParseAddr("10.0.0.2"))
	if sc.Total != 3 {
		t.Errorf("score %d (%s), want 3 from the zone that answers", sc.Total, sc)
	}
	if strings.Join(sc.Failed, ",") != "broken.test,slow.test" {
		t.Errorf("failed zones %v, want broken.test and slow.test", sc.Failed)
	}
	// A failure is not cached.
	d.Score(context.Background(), netip.MustParseAddr("10.0.0.2"))
	if n := srv.Queries("2.0.0.10.broken.test."); n != 2 {
		t.Errorf("broken zone asked %d times, want 2 (failures are not cached)", n)
	}
}
