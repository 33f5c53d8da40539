package greylist

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
	"moat/internal/store/bolt"
)

var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// testConfig is the default policy of config.Default.
var testConfig = Config{
	MinRetry:    time.Minute,
	RetryWindow: 24 * time.Hour,
	PassTTL:     36 * 24 * time.Hour,
	IPv4Prefix:  24,
	IPv6Prefix:  64,
}

func newTest(t *testing.T, cfg Config) (*Greylist, *bolt.Store, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(cfg, st, clk), st, clk
}

func check(t *testing.T, g *Greylist, client, sender, rcpt string, want Outcome) Result {
	t.Helper()
	r, err := g.Check(netip.MustParseAddr(client), sender, rcpt)
	if err != nil {
		t.Fatalf("Check(%s, %s, %s): %v", client, sender, rcpt, err)
	}
	if r.Outcome != want {
		t.Fatalf("Check(%s, %s, %s) = %v (%s), want %v", client, sender, rcpt, r.Outcome, r.Reason, want)
	}
	return r
}

func TestFirstAttemptDefers(t *testing.T) {
	g, st, _ := newTest(t, testConfig)
	r := check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Defer)
	if r.Reason != "first attempt" {
		t.Errorf("reason = %q, want \"first attempt\"", r.Reason)
	}
	want := store.Triplet{Net: netip.MustParsePrefix("192.0.2.0/24"), Sender: "alice@example.org", Rcpt: "bob@example.net"}
	if r.Triplet != want {
		t.Errorf("triplet = %v, want %v", r.Triplet, want)
	}
	a, ok, err := st.Triplet(want)
	if err != nil || !ok {
		t.Fatalf("triplet not stored: %v %v", ok, err)
	}
	if !a.First.Equal(t0) || !a.Last.Equal(t0) || a.Count != 1 || !a.Expires.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("attempt = %+v, want first=last=t0, count 1, expires t0+24h", a)
	}
}

func TestRetryTooSoonDefersAndKeepsFirst(t *testing.T) {
	g, st, clk := newTest(t, testConfig)
	r := check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Defer)
	clk.Advance(30 * time.Second)
	check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Defer)
	clk.Advance(29 * time.Second)
	r2 := check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Defer)
	if r2.Reason == "first attempt" {
		t.Errorf("a retry was taken for a first attempt")
	}
	a, _, _ := st.Triplet(r.Triplet)
	if !a.First.Equal(t0) {
		t.Errorf("First = %v, want %v: a retry too soon must not restart the clock", a.First, t0)
	}
	if a.Count != 3 || !a.Last.Equal(t0.Add(59*time.Second)) {
		t.Errorf("attempt = %+v, want count 3, last t0+59s", a)
	}
	if !a.Expires.Equal(t0.Add(24 * time.Hour)) {
		t.Errorf("Expires = %v, want first attempt + retry_window", a.Expires)
	}
	// Measured from the first attempt, the minute is now over.
	clk.Advance(time.Second)
	check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Pass)
}

func TestRetryInWindowPasses(t *testing.T) {
	for _, after := range []time.Duration{time.Minute, 10 * time.Minute, 23 * time.Hour} {
		t.Run(after.String(), func(t *testing.T) {
			g, st, clk := newTest(t, testConfig)
			r := check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Defer)
			clk.Advance(after)
			check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Pass)
			a, _, _ := st.Triplet(r.Triplet)
			if a.Count != 2 || !a.Expires.Equal(t0.Add(after).Add(testConfig.PassTTL)) {
				t.Errorf("attempt = %+v, want count 2, expires now + pass TTL", a)
			}
			// A passed triplet keeps passing.
			clk.Advance(48 * time.Hour)
			check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Pass)
		})
	}
}

func TestRetryAfterWindowStartsOver(t *testing.T) {
	g, st, clk := newTest(t, testConfig)
	r := check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Defer)
	clk.Advance(24*time.Hour + time.Second)
	r2 := check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Defer)
	if r2.Reason != "first attempt" {
		t.Errorf("reason = %q, want \"first attempt\"", r2.Reason)
	}
	a, _, _ := st.Triplet(r.Triplet)
	if now := clk.Now(); !a.First.Equal(now) || a.Count != 1 {
		t.Errorf("attempt = %+v, want a fresh first attempt at %v", a, now)
	}
	clk.Advance(time.Minute)
	check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Pass)
}

func TestPassTTLDefaultsToRetryWindow(t *testing.T) {
	cfg := testConfig
	cfg.PassTTL = 0
	g, st, clk := newTest(t, cfg)
	r := check(t, g, "192.0.2.7", "a@example.org", "b@example.net", Defer)
	clk.Advance(time.Hour)
	check(t, g, "192.0.2.7", "a@example.org", "b@example.net", Pass)
	a, _, _ := st.Triplet(r.Triplet)
	if !a.Expires.Equal(clk.Now().Add(cfg.RetryWindow)) {
		t.Errorf("Expires = %v, want now + retry_window", a.Expires)
	}
}

// TestTripletParts checks that each part of the triplet counts: a retry
// that changes the sender, the recipient or the network is a first attempt.
func TestTripletParts(t *testing.T) {
	g, _, clk := newTest(t, testConfig)
	check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Defer)
	clk.Advance(10 * time.Minute)
	for _, tt := range []struct{ client, sender, rcpt string }{
		{"192.0.2.7", "carol@example.org", "bob@example.net"},
		{"192.0.2.7", "alice@example.org", "dave@example.net"},
		{"198.51.100.7", "alice@example.org", "bob@example.net"},
		{"192.0.2.7", "", "bob@example.net"},
	} {
		r := check(t, g, tt.client, tt.sender, tt.rcpt, Defer)
		if r.Reason != "first attempt" {
			t.Errorf("%v: reason %q, want a first attempt", tt, r.Reason)
		}
	}
	check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Pass)
}

// TestFolding checks that a retry from another address of the same network
// passes, and one from another network does not.
func TestFolding(t *testing.T) {
	tests := []struct {
		name          string
		cfg           Config
		first, second string
		same          bool
	}{
		{"ipv4 same /24", testConfig, "127.0.0.5", "127.0.0.9", true},
		{"ipv4 other /24", testConfig, "127.0.0.5", "127.0.1.5", false},
		{"ipv4 mapped", testConfig, "::ffff:127.0.0.5", "127.0.0.200", true},
		{"ipv6 same /64", testConfig, "2001:db8:1:2::5", "2001:db8:1:2:ffff::9", true},
		{"ipv6 other /64", testConfig, "2001:db8:1:2::5", "2001:db8:1:3::5", false},
		{"ipv4 /32", Config{MinRetry: time.Minute, RetryWindow: time.Hour, IPv4Prefix: 32}, "127.0.0.5", "127.0.0.9", false},
		{"ipv4 /16", Config{MinRetry: time.Minute, RetryWindow: time.Hour, IPv4Prefix: 16}, "127.0.0.5", "127.0.200.9", true},
		{"ipv6 /48", Config{MinRetry: time.Minute, RetryWindow: time.Hour, IPv6Prefix: 48}, "2001:db8:1:2::5", "2001:db8:1:ffff::9", true},
		{"ipv6 /128", Config{MinRetry: time.Minute, RetryWindow: time.Hour, IPv6Prefix: 128}, "2001:db8:1:2::5", "2001:db8:1:2::6", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _, clk := newTest(t, tt.cfg)
			check(t, g, tt.first, "alice@example.org", "bob@example.net", Defer)
			clk.Advance(5 * time.Minute)
			want := Defer
			if tt.same {
				want = Pass
			}
			check(t, g, tt.second, "alice@example.org", "bob@example.net", want)
		})
	}
}

func TestNet(t *testing.T) {
	tests := []struct {
		cfg          Config
		client, want string
	}{
		{Config{}, "192.0.2.77", "192.0.2.0/24"},
		{Config{}, "::ffff:192.0.2.77", "192.0.2.0/24"},
		{Config{}, "2001:db8:a:b:c:d:e:f", "2001:db8:a:b::/64"},
		{Config{IPv4Prefix: 28}, "192.0.2.77", "192.0.2.64/28"},
		{Config{IPv4Prefix: 32}, "192.0.2.77", "192.0.2.77/32"},
		{Config{IPv6Prefix: 56}, "2001:db8:a:bbcc::1", "2001:db8:a:bb00::/56"},
		{Config{IPv6Prefix: 128}, "2001:db8::1", "2001:db8::1/128"},
	}
	for _, tt := range tests {
		g := New(tt.cfg, nil, nil)
		if got := g.Net(netip.MustParseAddr(tt.client)); got != netip.MustParsePrefix(tt.want) {
			t.Errorf("%+v: Net(%s) = %v, want %s", tt.cfg, tt.client, got, tt.want)
		}
	}
}

// TestSenderNormalisedInTriplet checks that a sender whose tag changes
// between attempts (BATV, VERP) still matches its first attempt.
func TestSenderNormalisedInTriplet(t *testing.T) {
	g, _, clk := newTest(t, testConfig)
	check(t, g, "192.0.2.7", "prvs=0123456789=alice@example.org", "bob@example.net", Defer)
	clk.Advance(15 * time.Minute)
	check(t, g, "192.0.2.7", "prvs=9876543210=alice@example.org", "bob@example.net", Pass)

	check(t, g, "192.0.2.7", "bounce-4711815-3@lists.example.org", "bob@example.net", Defer)
	clk.Advance(15 * time.Minute)
	check(t, g, "192.0.2.7", "bounce-4711999-3@lists.example.org", "bob@example.net", Pass)
}

func TestNormalizeSender(t *testing.T) {
	tests := []struct{ in, want string }{
		// Plain addresses are unchanged.
		{"alice@example.org", "alice@example.org"},
		{"alice.smith@example.org", "alice.smith@example.org"},
		{"user123@example.org", "user123@example.org"}, // short digit runs are part of a name
		{"postmaster", "postmaster"},
		// The null sender stays null.
		{"", ""},
		// BATV.
		{"prvs=1234567890=alice@example.org", "alice@example.org"},
		{"prvs=0a1b2c3d4e=alice@example.org", "alice@example.org"},
		{"prvs=alice/0a1b2c3d4e@example.org", "alice@example.org"},
		{"msprvs1=19072fPxkR4kc=bounces-1234@example.com", "bounces-#@example.com"},
		{"btv1==0a1b2c3d4e==alice@example.org", "alice@example.org"},
		// Plus extensions.
		{"alice+news@example.org", "alice@example.org"},
		{"alice+a+b@example.org", "alice@example.org"},
		{"+tag@example.org", "+tag@example.org"}, // no local part to keep
		// VERP: digit runs of four or more fold.
		{"bounce-12345-67@lists.example.org", "bounce-#-67@lists.example.org"},
		{"bounce-12345-67890@lists.example.org", "bounce-#-#@lists.example.org"},
		{"bounces+12345-alice=example.net@lists.example.org", "bounces@lists.example.org"},
		{"msg1234@example.org", "msg#@example.org"},
		{"1234@example.org", "#@example.org"},
		// Only the local part folds, never the domain.
		{"alice@mx12345.example.org", "alice@mx12345.example.org"},
	}
	for _, tt := range tests {
		if got := NormalizeSender(tt.in); got != tt.want {
			t.Errorf("NormalizeSender(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	if Defer.String() != "defer" || Pass.String() != "pass" {
		t.Errorf("Outcome strings: %q %q", Defer, Pass)
	}
}

// The delay a sender waited is counted once per triplet, at the attempt
// that passed: the retries that follow it through are no new pass.
func TestFirstPassCarriesTheDelay(t *testing.T) {
	g, _, clk := newTest(t, testConfig)
	const c, s, r = "192.0.2.7", "alice@example.org", "bob@example.net"
	check(t, g, c, s, r, Defer)
	clk.Advance(20 * time.Second)
	if too := check(t, g, c, s, r, Defer); too.FirstPass || too.Delay != 20*time.Second {
		t.Errorf("retry too soon: FirstPass %v, Delay %v; want false, 20s", too.FirstPass, too.Delay)
	}
	clk.Advance(70 * time.Second)
	first := check(t, g, c, s, r, Pass)
	if !first.FirstPass || first.Delay != 90*time.Second {
		t.Errorf("first pass: FirstPass %v, Delay %v; want true, 1m30s", first.FirstPass, first.Delay)
	}
	clk.Advance(time.Hour)
	if again := check(t, g, c, s, r, Pass); again.FirstPass {
		t.Errorf("a second pass of the same triplet is marked as its first")
	}
}

// TestPassOnNextRetry: with spamd's rule the first retry that qualifies is
// deferred, the attempt after it passes, and so does every later one; a
// retry too soon does not qualify, and another triplet is not marked.
func TestPassOnNextRetry(t *testing.T) {
	cfg := testConfig
	cfg.MinRetry = 25 * time.Minute
	cfg.RetryWindow = 4 * time.Hour
	cfg.PassOnNextRetry = true
	g, _, clk := newTest(t, cfg)
	const ip, from, to = "192.0.2.7", "alice@example.org", "bob@example.net"
	check(t, g, ip, from, to, Defer)
	clk.Advance(10 * time.Minute)
	if r := check(t, g, ip, from, to, Defer); r.Reason != "retry too soon (10m0s)" {
		t.Errorf("early retry: reason %q", r.Reason)
	}
	clk.Advance(20 * time.Minute)
	if r := check(t, g, ip, from, to, Defer); r.Reason != "retry qualified after 30m0s, passes at the next attempt" {
		t.Errorf("qualifying retry: reason %q", r.Reason)
	}
	check(t, g, ip, "carol@example.org", to, Defer)
	// The next attempt may come after the first attempt's window: the
	// qualified triplet lives for the pass TTL.
	clk.Advance(5 * time.Hour)
	if r := check(t, g, ip, from, to, Pass); !r.FirstPass || r.Delay != 5*time.Hour+30*time.Minute {
		t.Errorf("the pass after the qualifying retry: FirstPass %v, Delay %v; want true, 5h30m", r.FirstPass, r.Delay)
	}
	clk.Advance(24 * time.Hour)
	if r := check(t, g, ip, from, to, Pass); r.FirstPass {
		t.Errorf("a later pass of the same triplet is marked as its first")
	}
	check(t, g, ip, "carol@example.org", to, Defer)
}

// TestPassOnNextRetryOff: without the option the qualifying retry passes.
func TestPassOnNextRetryOff(t *testing.T) {
	g, _, clk := newTest(t, testConfig)
	check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Defer)
	clk.Advance(2 * time.Minute)
	check(t, g, "192.0.2.7", "alice@example.org", "bob@example.net", Pass)
}
