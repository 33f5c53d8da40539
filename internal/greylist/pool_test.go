package greylist

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/reputation/dnstest"
	"moat/internal/store"
	"moat/internal/store/bolt"
)

// spfServer serves the SPF records the pool tests need.
func spfServer(t *testing.T) *dnstest.Server {
	srv := dnstest.New(t)
	srv.Add(t,
		`pool.test. 300 IN TXT "v=spf1 ip4:10.20.0.0/16 ip6:2001:db8:20::/48 include:_spf.pool.test -all"`,
		`_spf.pool.test. 300 IN TXT "v=spf1 ip4:10.30.1.0/24 -all"`,
		`wide.test. 300 IN TXT "v=spf1 +all"`,
		`zero.test. 300 IN TXT "v=spf1 ip4:0.0.0.0/0 -all"`,
		`soft.test. 300 IN TXT "v=spf1 ip4:10.40.0.0/16 ~all"`,
		`loop.test. 300 IN TXT "v=spf1 include:loop.test -all"`,
	)
	srv.Fail("broken.test")
	return srv
}

func newPools(t *testing.T, srv *dnstest.Server, clk clock.Clock) *Pools {
	return NewPools(PoolsConfig{Servers: []string{srv.Addr}, Timeout: time.Second, Clock: clk, AskReserved: true})
}

func TestPoolsAuthorised(t *testing.T) {
	srv := spfServer(t)
	p := newPools(t, srv, clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)))
	for _, tc := range []struct {
		client, sender string
		want           bool
	}{
		{"10.20.1.1", "alice@pool.test", true},
		{"10.20.200.9", "bob@POOL.test", true},
		{"2001:db8:20:5::1", "alice@pool.test", true},
		{"10.30.1.77", "alice@pool.test", true},   // through include:
		{"10.30.2.77", "alice@pool.test", false},  // outside the pool
		{"192.0.2.77", "alice@pool.test", false},  // a forger
		{"10.20.1.1", "alice@wide.test", false},   // +all passes for anybody: no pool
		{"10.20.1.1", "alice@zero.test", false},   // so does 0.0.0.0/0
		{"10.40.1.1", "alice@soft.test", true},    // pass, even with ~all for the rest
		{"10.20.1.1", "alice@loop.test", false},   // permerror: lookup limit
		{"10.20.1.1", "alice@broken.test", false}, // temperror
		{"10.20.1.1", "alice@none.test", false},   // no record
		{"10.20.1.1", "", false},
		{"10.20.1.1", "nodomain", false},
	} {
		if got := p.Authorised(netip.MustParseAddr(tc.client), tc.sender); got != tc.want {
			t.Errorf("Authorised(%s, %q) = %v, want %v", tc.client, tc.sender, got, tc.want)
		}
	}
	// Results are cached: asking again costs no query.
	before := srv.Queries("pool.test.")
	p.Authorised(netip.MustParseAddr("10.20.1.1"), "alice@pool.test")
	if got := srv.Queries("pool.test."); got != before {
		t.Errorf("a cached result asked DNS again (%d -> %d queries)", before, got)
	}
}

func TestPoolsNeverAskReservedNames(t *testing.T) {
	srv := spfServer(t)
	p := NewPools(PoolsConfig{Servers: []string{srv.Addr}, Timeout: time.Second})
	if p.Authorised(netip.MustParseAddr("10.20.1.1"), "alice@pool.test") {
		t.Error("a .test sender was authorised without AskReserved")
	}
	for _, name := range []string{"pool.test.", "example.org."} {
		if n := srv.Queries(name); n != 0 {
			t.Errorf("%d queries for %s, want none", n, name)
		}
	}
}

func TestCheckPool(t *testing.T) {
	clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g := New(Config{MinRetry: time.Minute, RetryWindow: 24 * time.Hour, PassTTL: 36 * 24 * time.Hour}, st, clk)
	p := newPools(t, spfServer(t), clk)
	step := func(client, sender, rcpt string, want Outcome) Result {
		t.Helper()
		r, err := g.CheckPool(p, netip.MustParseAddr(client), sender, rcpt)
		if err != nil || r.Outcome != want {
			t.Fatalf("CheckPool(%s, %s, %s) = %v (%s), %v; want %v", client, sender, rcpt, r.Outcome, r.Reason, err, want)
		}
		return r
	}
	// First attempt from one pool address, retry from another /16 of the pool.
	r := step("10.20.1.1", "alice@pool.test", "u@example.org", Defer)
	if r.Triplet != PoolTriplet("alice@pool.test", "u@example.org") || r.Triplet.Net != AnyNet {
		t.Errorf("triplet %v, want the pool triplet", r.Triplet)
	}
	clk.Advance(5 * time.Minute)
	step("10.30.1.9", "alice@pool.test", "u@example.org", Pass)

	// A forger retrying from outside the pool meets its own network's triplet.
	step("10.20.1.1", "bob@pool.test", "u@example.org", Defer)
	clk.Advance(5 * time.Minute)
	step("192.0.2.9", "bob@pool.test", "u@example.org", Defer)
	// A forger's first attempt and retry from outside gain nothing either.
	step("198.51.100.1", "carol@pool.test", "u@example.org", Defer)
	clk.Advance(5 * time.Minute)
	step("198.51.101.1", "carol@pool.test", "u@example.org", Defer)
	// Without SPF, the /24 folding still works.
	step("198.51.100.1", "dave@none.test", "u@example.org", Defer)
	clk.Advance(5 * time.Minute)
	step("198.51.100.200", "dave@none.test", "u@example.org", Pass)
	// A nil Pools and the null sender are plain Check.
	r, _ = g.CheckPool(nil, netip.MustParseAddr("10.20.1.1"), "alice@pool.test", "v@example.org")
	if r.Triplet.Net != netip.MustParsePrefix("10.20.1.0/24") {
		t.Errorf("nil Pools: triplet %v", r.Triplet)
	}
	r, _ = g.CheckPool(p, netip.MustParseAddr("10.20.1.1"), "", "v@example.org")
	if r.Triplet.Net != netip.MustParsePrefix("10.20.1.0/24") {
		t.Errorf("null sender: triplet %v", r.Triplet)
	}
	var _ store.Triplet = r.Triplet
}
