package classify

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/traps"
)

var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	blackTTL = 24 * time.Hour
	whiteTTL = 36 * 24 * time.Hour
	greyTTL  = 24 * time.Hour
	trap     = "trap@example.org"
)

type fixture struct {
	eng *Engine
	st  *bolt.Store
	clk *clock.Fake
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	clk := clock.NewFake(t0)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ts, err := traps.New(st, []string{trap})
	if err != nil {
		t.Fatal(err)
	}
	g := greylist.New(greylist.Config{MinRetry: time.Minute, RetryWindow: 24 * time.Hour, PassTTL: whiteTTL}, st, clk)
	if cfg.BlackTTL == 0 {
		cfg.BlackTTL, cfg.WhiteTTL, cfg.GreyTTL = blackTTL, whiteTTL, greyTTL
	}
	return &fixture{eng: New(cfg, st, clk, g, ts), st: st, clk: clk}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func (f *fixture) host(t *testing.T, s string) store.Host {
	t.Helper()
	h, ok, err := f.st.Host(store.HostPrefix(ip(s)))
	if err != nil || !ok {
		t.Fatalf("host %s not stored (%v)", s, err)
	}
	return h
}

func (f *fixture) classify(t *testing.T, s string) Verdict {
	t.Helper()
	v, err := f.eng.Classify(ip(s))
	if err != nil {
		t.Fatalf("Classify(%s): %v", s, err)
	}
	return v
}

func (f *fixture) put(t *testing.T, s string, c store.Class, reason string, expires time.Time) {
	t.Helper()
	err := f.st.PutHost(store.Host{Prefix: store.HostPrefix(ip(s)), Class: c, Reason: reason, First: f.clk.Now(), Last: f.clk.Now(), Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
}

func TestClassifyStaticLists(t *testing.T) {
	f := newFixture(t, Config{
		Whitelist: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
		Blacklist: []netip.Prefix{netip.MustParsePrefix("192.0.0.0/16"), netip.MustParsePrefix("203.0.113.0/24")},
	})
	// The store says otherwise; the configuration wins.
	f.put(t, "192.0.2.7", store.Black, "trap hit <x@y>", time.Time{})
	f.put(t, "203.0.113.9", store.White, "greylist", t0.Add(time.Hour))
	tests := []struct {
		addr   string
		want   store.Class
		reason string
		static bool
	}{
		{"192.0.2.7", store.White, "whitelist 192.0.2.0/24", true},
		{"::ffff:192.0.2.8", store.White, "whitelist 192.0.2.0/24", true},
		{"2001:db8::25", store.White, "whitelist 2001:db8::/32", true},
		{"192.0.3.1", store.Black, "blacklist 192.0.0.0/16", true},
		{"203.0.113.9", store.Black, "blacklist 203.0.113.0/24", true},
		{"198.51.100.1", store.Grey, "unknown", false},
		{"2001:db9::1", store.Grey, "unknown", false},
	}
	for _, tt := range tests {
		v := f.classify(t, tt.addr)
		if v.Class != tt.want || v.Reason != tt.reason || v.Static != tt.static {
			t.Errorf("Classify(%s) = %+v, want %v %q static=%v", tt.addr, v, tt.want, tt.reason, tt.static)
		}
	}
}

func TestClassifyFromStore(t *testing.T) {
	f := newFixture(t, Config{})
	f.put(t, "198.51.100.1", store.White, "greylist: retried after 5m0s", t0.Add(time.Hour))
	f.put(t, "198.51.100.2", store.Black, "early talker", t0.Add(time.Hour))
	if v := f.classify(t, "198.51.100.1"); v.Class != store.White || v.Reason != "greylist: retried after 5m0s" || v.Static {
		t.Errorf("white host: %+v", v)
	}
	if v := f.classify(t, "::ffff:198.51.100.2"); v.Class != store.Black || v.Reason != "early talker" {
		t.Errorf("black host (mapped): %+v", v)
	}
	f.clk.Advance(time.Hour)
	if v := f.classify(t, "198.51.100.2"); v.Class != store.Grey {
		t.Errorf("expired black host: %+v, want grey", v)
	}
}

func TestRcptTrap(t *testing.T) {
	f := newFixture(t, Config{})
	d, err := f.eng.Rcpt(ip("198.51.100.1"), "spammer@example.com", trap)
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != Trap || d.Reason != "trap hit <"+trap+">" {
		t.Errorf("Rcpt(trap) = %+v, want trap", d)
	}
	h := f.host(t, "198.51.100.1")
	if h.Class != store.Black || h.Reason != "trap hit <"+trap+">" || !h.Expires.Equal(t0.Add(blackTTL)) {
		t.Errorf("host = %+v, want black, trap reason, expires t0+black_ttl", h)
	}
	f.eng.Rcpt(ip("198.51.100.2"), "", trap)
	c, _ := f.st.Counters()
	if got := c[traps.HitCounter(trap)]; got != 2 {
		t.Errorf("trap hit counter = %d, want 2", got)
	}
	if v := f.classify(t, "198.51.100.1"); v.Class != store.Black {
		t.Errorf("trapped host classifies as %v", v.Class)
	}
	// A trap hit never touches the greylist.
	if _, ok, _ := f.st.Triplet(store.Triplet{Net: netip.MustParsePrefix("198.51.100.0/24"), Sender: "spammer@example.com", Rcpt: trap}); ok {
		t.Error("a trap hit was recorded as a greylist attempt")
	}
}

func TestRcptGreylist(t *testing.T) {
	f := newFixture(t, Config{})
	client := ip("198.51.100.1")
	d, err := f.eng.Rcpt(client, "alice@example.org", "bob@example.net")
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != Defer {
		t.Fatalf("first Rcpt = %+v, want defer", d)
	}
	h := f.host(t, "198.51.100.1")
	if h.Class != store.Grey || !h.Expires.Equal(t0.Add(greyTTL)) || h.Reason != "greylisted: first attempt" {
		t.Errorf("greylisted host = %+v, want grey until t0+grey_ttl", h)
	}
	if v := f.classify(t, "198.51.100.1"); v.Class != store.Grey {
		t.Errorf("listed grey host classifies as %v", v.Class)
	}

	f.clk.Advance(10 * time.Minute)
	d, err = f.eng.Rcpt(client, "alice@example.org", "bob@example.net")
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != Pass || d.Reason != "greylist: retried after 10m0s" {
		t.Fatalf("retry = %+v, want pass", d)
	}
	// A pass lets the message go to the backend; only the backend's
	// acceptance makes the host white.
	if h = f.host(t, "198.51.100.1"); h.Class != store.Grey {
		t.Fatalf("host after a pass, before any accepted message = %+v, want still grey", h)
	}
	if _, err := f.eng.Accepted(client, "alice@example.org", d.Reason); err != nil {
		t.Fatal(err)
	}
	h = f.host(t, "198.51.100.1")
	now := f.clk.Now()
	if h.Class != store.White || !h.Expires.Equal(now.Add(whiteTTL)) || !h.First.Equal(t0) || !h.Last.Equal(now) {
		t.Errorf("passed host = %+v, want white until now+white_ttl, first seen t0", h)
	}
	if v := f.classify(t, "198.51.100.1"); v.Class != store.White {
		t.Errorf("passed host classifies as %v", v.Class)
	}
}

func TestRcptDeferRefreshesGreyAtMostOnceAMinute(t *testing.T) {
	f := newFixture(t, Config{})
	client := ip("198.51.100.1")
	f.eng.Rcpt(client, "a@example.org", "b@example.net")
	f.clk.Advance(30 * time.Second)
	f.eng.Rcpt(client, "c@example.org", "b@example.net")
	if h := f.host(t, "198.51.100.1"); !h.Last.Equal(t0) {
		t.Errorf("Last = %v after 30s, want %v (no write within a minute)", h.Last, t0)
	}
	f.clk.Advance(time.Minute)
	f.eng.Rcpt(client, "d@example.org", "b@example.net")
	h := f.host(t, "198.51.100.1")
	now := f.clk.Now()
	if !h.Last.Equal(now) || !h.Expires.Equal(now.Add(greyTTL)) || !h.First.Equal(t0) {
		t.Errorf("host = %+v, want last=now, expires now+grey_ttl, first t0", h)
	}
}

// The class is read again at every RCPT, and a RCPT never changes an
// operator's entry: white passes at once, black goes to the tarpit.
func TestRcptFollowsClassNeverDemotes(t *testing.T) {
	for _, tc := range []struct {
		class store.Class
		want  Action
	}{{store.White, Pass}, {store.Black, Black}} {
		t.Run(tc.class.String(), func(t *testing.T) {
			f := newFixture(t, Config{})
			f.put(t, "198.51.100.1", tc.class, "operator", time.Time{})
			f.clk.Advance(time.Hour)
			d, err := f.eng.Rcpt(ip("198.51.100.1"), "a@example.org", "b@example.net")
			if err != nil || d.Action != tc.want {
				t.Fatalf("Rcpt = %+v, %v; want %v", d, err, tc.want)
			}
			h := f.host(t, "198.51.100.1")
			if h.Class != tc.class || h.Reason != "operator" || !h.Expires.IsZero() {
				t.Errorf("host = %+v, want it left %v", h, tc.class)
			}
		})
	}
}

func TestRcptNoGreyTTLListsNothing(t *testing.T) {
	f := newFixture(t, Config{BlackTTL: blackTTL, WhiteTTL: whiteTTL})
	f.eng.Rcpt(ip("198.51.100.1"), "a@example.org", "b@example.net")
	if _, ok, _ := f.st.Host(store.HostPrefix(ip("198.51.100.1"))); ok {
		t.Error("a host was listed grey with grey_ttl 0")
	}
}

func TestMail(t *testing.T) {
	f := newFixture(t, Config{})
	for _, sender := range []string{"", "alice@example.org"} {
		d, err := f.eng.Mail(ip("198.51.100.1"), sender)
		if err != nil || d.Action != Accept {
			t.Errorf("Mail(%q) = %+v, %v; want accept", sender, d, err)
		}
	}
	if _, ok, _ := f.st.Host(store.HostPrefix(ip("198.51.100.1"))); ok {
		t.Error("an accepted MAIL stored the host")
	}
	d, err := f.eng.Mail(ip("198.51.100.2"), trap)
	if err != nil || d.Action != Trap {
		t.Fatalf("Mail(trap) = %+v, %v; want trap", d, err)
	}
	h := f.host(t, "198.51.100.2")
	if h.Class != store.Black || h.Reason != "trap hit <"+trap+">" || !h.Expires.Equal(t0.Add(blackTTL)) {
		t.Errorf("host = %+v, want black for black_ttl", h)
	}
}

func TestEarlyTalkerAndBlacklist(t *testing.T) {
	f := newFixture(t, Config{})
	if err := f.eng.EarlyTalker(ip("::ffff:198.51.100.1"), "early talker"); err != nil {
		t.Fatal(err)
	}
	h := f.host(t, "198.51.100.1")
	if h.Class != store.Black || h.Source != store.SourceEarlyTalk || h.Reason != "early talker" || !h.Expires.Equal(t0.Add(blackTTL)) {
		t.Errorf("early talker = %+v, want black for black_ttl", h)
	}
	if err := f.eng.Blacklist(ip("2001:db8::1"), store.SourceDNSBL, "dnsbl"); err != nil {
		t.Fatal(err)
	}
	h = f.host(t, "2001:db8::1")
	if h.Class != store.Black || h.Reason != "dnsbl" || !h.Expires.Equal(t0.Add(blackTTL)) {
		t.Errorf("blacklisted = %+v", h)
	}
	f.clk.Advance(blackTTL)
	if v := f.classify(t, "198.51.100.1"); v.Class != store.Grey {
		t.Errorf("after black_ttl: %v, want grey", v.Class)
	}
}

func TestSetClassNeverExpires(t *testing.T) {
	f := newFixture(t, Config{})
	// A host that was black for a while keeps its first-seen time.
	f.eng.EarlyTalker(ip("198.51.100.1"), "early talker")
	f.clk.Advance(time.Hour)
	for _, c := range []store.Class{store.White, store.Black} {
		if err := f.eng.SetClass(store.HostPrefix(ip("198.51.100.1")), c, "operator"); err != nil {
			t.Fatal(err)
		}
		h := f.host(t, "198.51.100.1")
		if h.Class != c || h.Reason != "operator" || !h.Expires.IsZero() || !h.First.Equal(t0) {
			t.Errorf("SetClass %v: host = %+v, want no expiry, first seen t0", c, h)
		}
	}
	f.clk.Advance(10 * 365 * 24 * time.Hour)
	if v := f.classify(t, "198.51.100.1"); v.Class != store.Black || v.Reason != "operator" {
		t.Errorf("ten years on: %+v, want the operator's black", v)
	}
}

func TestSetClassGreyForgets(t *testing.T) {
	f := newFixture(t, Config{})
	p := store.HostPrefix(ip("198.51.100.1"))
	f.eng.SetClass(p, store.Black, "operator")
	if err := f.eng.SetClass(p, store.Grey, "operator"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := f.st.Host(p); ok {
		t.Error("SetClass grey kept the entry")
	}
	if v := f.classify(t, "198.51.100.1"); v.Class != store.Grey || v.Reason != "unknown" {
		t.Errorf("after SetClass grey: %+v", v)
	}
}

func TestForget(t *testing.T) {
	f := newFixture(t, Config{})
	f.eng.EarlyTalker(ip("198.51.100.1"), "early talker")
	if err := f.eng.Forget(store.HostPrefix(ip("198.51.100.1"))); err != nil {
		t.Fatal(err)
	}
	if v := f.classify(t, "198.51.100.1"); v.Class != store.Grey {
		t.Errorf("forgotten host: %v, want grey", v.Class)
	}
	if err := f.eng.Forget(store.HostPrefix(ip("198.51.100.1"))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Forget of nothing: %v, want ErrNotFound", err)
	}
}

func TestNetworkEntry(t *testing.T) {
	f := newFixture(t, Config{})
	if err := f.eng.SetClass(netip.MustParsePrefix("192.0.2.0/24"), store.Black, "operator"); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.SetClass(netip.MustParsePrefix("2001:db8::/48"), store.White, "partner"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr   string
		want   store.Class
		reason string
	}{
		{"192.0.2.77", store.Black, "operator"},
		{"::ffff:192.0.2.1", store.Black, "operator"},
		{"192.0.3.1", store.Grey, "unknown"},
		{"2001:db8:0:ffff::1", store.White, "partner"},
		{"2001:db8:1::1", store.Grey, "unknown"},
	}
	for _, tt := range tests {
		if v := f.classify(t, tt.addr); v.Class != tt.want || v.Reason != tt.reason {
			t.Errorf("Classify(%s) = %+v, want %v %q", tt.addr, v, tt.want, tt.reason)
		}
	}
	// A host entry is more specific than its network.
	f.eng.SetClass(store.HostPrefix(ip("192.0.2.25")), store.White, "operator")
	if v := f.classify(t, "192.0.2.25"); v.Class != store.White {
		t.Errorf("host in a black network with its own white entry: %v", v.Class)
	}
	// Seen of a host white through its network writes no host entry.
	v := f.classify(t, "2001:db8:0:ffff::1")
	f.clk.Advance(time.Hour)
	if err := f.eng.Seen(ip("2001:db8:0:ffff::1"), v); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := f.st.Host(store.HostPrefix(ip("2001:db8:0:ffff::1"))); ok {
		t.Error("Seen created a host entry inside a white network")
	}
}

func TestSeen(t *testing.T) {
	f := newFixture(t, Config{Whitelist: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	f.put(t, "198.51.100.1", store.White, "greylist", t0.Add(whiteTTL))
	f.put(t, "198.51.100.2", store.White, "operator", time.Time{})
	f.put(t, "198.51.100.3", store.Black, "early talker", t0.Add(blackTTL))
	f.put(t, "192.0.2.7", store.White, "greylist", t0.Add(whiteTTL))

	seen := func(addr string) {
		t.Helper()
		if err := f.eng.Seen(ip(addr), f.classify(t, addr)); err != nil {
			t.Fatalf("Seen(%s): %v", addr, err)
		}
	}

	// Within a minute: no write.
	f.clk.Advance(59 * time.Second)
	seen("198.51.100.1")
	if h := f.host(t, "198.51.100.1"); !h.Last.Equal(t0) || !h.Expires.Equal(t0.Add(whiteTTL)) {
		t.Errorf("seen within a minute: %+v, want untouched", h)
	}

	f.clk.Advance(time.Hour)
	now := f.clk.Now()
	for _, a := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "192.0.2.7"} {
		seen(a)
	}
	if h := f.host(t, "198.51.100.1"); !h.Last.Equal(now) || !h.Expires.Equal(now.Add(whiteTTL)) {
		t.Errorf("white host seen: %+v, want last=now, expires now+white_ttl", h)
	}
	if h := f.host(t, "198.51.100.2"); !h.Last.Equal(now) || !h.Expires.IsZero() {
		t.Errorf("operator's white host seen: %+v, want last=now and still no expiry", h)
	}
	if h := f.host(t, "198.51.100.3"); !h.Last.Equal(t0) || !h.Expires.Equal(t0.Add(blackTTL)) {
		t.Errorf("black host seen: %+v, want untouched", h)
	}
	// Static: the verdict comes from the whitelist, the entry is left alone.
	if h := f.host(t, "192.0.2.7"); !h.Last.Equal(t0) || !h.Expires.Equal(t0.Add(whiteTTL)) {
		t.Errorf("statically white host seen: %+v, want its stored entry untouched", h)
	}

	// A white host seen regularly stays white past its first white_ttl.
	for i := 0; i < 3; i++ {
		f.clk.Advance(whiteTTL - time.Hour)
		if v := f.classify(t, "198.51.100.1"); v.Class != store.White {
			t.Fatalf("round %d: white host lost its class while seen regularly", i)
		}
		seen("198.51.100.1")
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{Accept: "accept", Defer: "defer", Pass: "pass", Trap: "trap"} {
		if a.String() != want {
			t.Errorf("%d.String() = %q, want %q", a, a.String(), want)
		}
	}
}

// An operator's white entry releases an address from the configuration's
// blacklist (a host deferred there is let through without a restart);
// nothing else does, and the configuration's whitelist still wins over
// an operator's black entry.
func TestOperatorReleasesBlacklisted(t *testing.T) {
	f := newFixture(t, Config{
		Whitelist: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		Blacklist: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
	})
	if v := f.classify(t, "203.0.113.9"); v.Class != store.Black || v.Source != store.SourceOperator || !v.Static {
		t.Fatalf("blacklisted host: %+v", v)
	}
	// Evidence that is not the operator's changes nothing.
	if _, err := f.eng.Accepted(ip("203.0.113.9"), "a@b.example", "test"); err != nil {
		t.Fatal(err)
	}
	if v := f.classify(t, "203.0.113.9"); v.Class != store.Black {
		t.Fatalf("a blacklisted host whose mail was accepted: %+v, want black", v)
	}
	if err := f.eng.SetClass(netip.MustParsePrefix("203.0.113.9/32"), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	if v := f.classify(t, "203.0.113.9"); v.Class != store.White || v.Source != store.SourceOperator || v.Static {
		t.Errorf("released host: %+v, want the operator's white entry", v)
	}
	if v := f.classify(t, "203.0.113.10"); v.Class != store.Black {
		t.Errorf("its neighbour: %+v, want still black", v)
	}
	if err := f.eng.SetClass(netip.MustParsePrefix("192.0.2.7/32"), store.Black, "operator"); err != nil {
		t.Fatal(err)
	}
	if v := f.classify(t, "192.0.2.7"); v.Class != store.White || !v.Static {
		t.Errorf("whitelisted host the operator made black: %+v, want the whitelist's white", v)
	}
}

// Observe mode: a message the backend accepted from a host that enforce
// mode would have greylisted leaves the host grey with history: listed
// grey, not white, not vouched for (a trap still blacklists it), and the
// message's triplets pass at once long after the retry window.
func TestDelivered(t *testing.T) {
	f := newFixture(t, Config{})
	client := ip("198.51.100.5")
	d, err := f.eng.Rcpt(client, "bob@sender.example", "alice@example.org")
	if err != nil || d.Action != Defer {
		t.Fatalf("first attempt: %+v, %v", d, err)
	}
	if err := f.eng.Delivered(client, "bob@sender.example", []string{"alice@example.org"}); err != nil {
		t.Fatal(err)
	}
	h := f.host(t, "198.51.100.5")
	if h.Class != store.Grey || !strings.HasPrefix(h.Reason, "observed:") {
		t.Errorf("after delivery: %+v, want grey, observed", h)
	}
	evs, err := f.eng.History(store.HostPrefix(client))
	if err != nil || len(evs) == 0 || !strings.HasPrefix(evs[len(evs)-1].Reason, "observed:") {
		t.Errorf("history %+v, %v: want the observation recorded", evs, err)
	}
	// A week later, long past the 24h retry window: the same triplet
	// passes at once; another recipient is greylisted as for anyone.
	f.clk.Advance(7 * 24 * time.Hour)
	if d, err := f.eng.Rcpt(client, "bob@sender.example", "alice@example.org"); err != nil || d.Action != Pass {
		t.Errorf("kept triplet a week later: %+v, %v, want pass", d, err)
	}
	if d, err := f.eng.Rcpt(client, "bob@sender.example", "carol@example.org"); err != nil || d.Action != Defer {
		t.Errorf("new triplet: %+v, %v, want defer", d, err)
	}
	if v := f.classify(t, "198.51.100.5"); v.Class != store.Grey {
		t.Errorf("class %+v, want grey", v)
	}
	if d, err := f.eng.Rcpt(client, "bob@sender.example", trap); err != nil || d.Action != Trap {
		t.Errorf("trap through an observed host: %+v, %v, want it blacklisted", d, err)
	}
	// A triplet never seen is not kept.
	if err := f.eng.Delivered(ip("198.51.100.6"), "x@y.example", []string{"alice@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := f.st.Triplet(f.eng.greyTriplet(ip("198.51.100.6"), "x@y.example", "alice@example.org")); ok {
		t.Error("Delivered stored a triplet the greylist never saw")
	}
}
