package classify

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/reputation"
	"moat/internal/reputation/dnstest"
	"moat/internal/store"
)

func spam(s string) reputation.Feedback {
	return reputation.Feedback{IP: ip(s), Verdict: reputation.Spam, Score: 1000, Source: "rspamd"}
}

func ham(s string) reputation.Feedback {
	return reputation.Feedback{IP: ip(s), Verdict: reputation.Ham, Source: "rspamd"}
}

// whiten lets addr pass the greylist, as a real sender would.
func (f *fixture) whiten(t *testing.T, addr string) {
	t.Helper()
	f.eng.Rcpt(ip(addr), "a@sender.example", "u@example.org")
	f.clk.Advance(5 * time.Minute)
	d, err := f.eng.Rcpt(ip(addr), "a@sender.example", "u@example.org")
	if err != nil || d.Action != Pass {
		t.Fatalf("greylist retry of %s: %+v %v", addr, d, err)
	}
	if _, err := f.eng.Accepted(ip(addr), "a@sender.example", d.Reason); err != nil {
		t.Fatalf("accepted message from %s: %v", addr, err)
	}
}

func (f *fixture) feedback(t *testing.T, fb reputation.Feedback, wantClass string) FeedbackResult {
	t.Helper()
	r, err := f.eng.Feedback(fb)
	if err != nil {
		t.Fatalf("Feedback(%v): %v", fb, err)
	}
	if r.Class != wantClass {
		t.Fatalf("Feedback(%s from %s): class %s (karma %.2f), want %s", fb.Verdict, fb.IP, r.Class, r.Karma, wantClass)
	}
	return r
}

func TestFeedbackSpamDemotesThenBlacklists(t *testing.T) {
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{})
	f.whiten(t, "192.0.2.1")
	r := f.feedback(t, spam("192.0.2.1"), "grey")
	if !r.Changed || !strings.Contains(r.Reason, "spam from rspamd") {
		t.Errorf("first spam: %+v", r)
	}
	if h := f.host(t, "192.0.2.1"); h.Class != store.Grey || !h.Expires.Equal(f.clk.Now().Add(greyTTL)) {
		t.Errorf("after one spam: %+v, want grey for grey_ttl", h)
	}
	f.clk.Advance(time.Minute)
	f.feedback(t, spam("192.0.2.1"), "black")
	if h := f.host(t, "192.0.2.1"); h.Class != store.Black || !h.Expires.Equal(f.clk.Now().Add(blackTTL)) {
		t.Errorf("after two spams: %+v, want black for black_ttl", h)
	}
	hist, err := f.eng.History(store.HostPrefix(ip("192.0.2.1")))
	if err != nil {
		t.Fatal(err)
	}
	var classes []string
	for _, e := range hist {
		classes = append(classes, e.Class)
	}
	if got := strings.Join(classes, ","); got != "white,grey,black" {
		t.Errorf("history classes %q, want white,grey,black (%+v)", got, hist)
	}
	if k, ok, _ := f.eng.KarmaOf(ip("192.0.2.1")); !ok || k > -1.9 {
		t.Errorf("karma %v %v, want about -2", k, ok)
	}
}

func TestFeedbackHamProtects(t *testing.T) {
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{})
	f.whiten(t, "192.0.2.2")
	for i := 0; i < 4; i++ {
		f.feedback(t, ham("192.0.2.2"), "white")
	}
	r := f.feedback(t, spam("192.0.2.2"), "white")
	if r.Changed {
		t.Errorf("a host with four ham verdicts lost its whitelisting to one spam: %+v", r)
	}
	hist, _ := f.eng.History(store.HostPrefix(ip("192.0.2.2")))
	if len(hist) != 6 || hist[5].Class != "" || !strings.Contains(hist[5].Reason, "spam from rspamd") {
		t.Errorf("history %+v, want the class change and 5 pieces of evidence", hist)
	}
}

func TestFeedbackDecays(t *testing.T) {
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{})
	f.feedback(t, spam("192.0.2.3"), "grey") // unknown: stays grey
	f.clk.Advance(30 * 24 * time.Hour)       // four half-lives and more
	f.feedback(t, spam("192.0.2.3"), "grey") // the old sin has faded: -1.06
	f.feedback(t, spam("192.0.2.3"), "black")
}

func TestFeedbackOperatorAndStaticStand(t *testing.T) {
	f := newFixture(t, Config{Whitelist: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	f.eng.SetReputation(Reputation{})
	if err := f.eng.SetClass(store.HostPrefix(ip("192.0.2.4")), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		f.feedback(t, spam("192.0.2.4"), "white")
		f.feedback(t, spam("198.51.100.4"), "white")
	}
}

func TestDNSBLVerdicts(t *testing.T) {
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{})
	score := func(total int) reputation.Score {
		return reputation.Score{Total: total, Hits: []reputation.Hit{{Zone: "zen.test", Reply: ip("127.0.0.2"), Weight: total}}}
	}
	v, err := f.eng.DNSBL(ip("192.0.2.5"), score(3))
	if err != nil || v.Class != store.Black || !strings.Contains(v.Reason, "zen.test=127.0.0.2(+3)") {
		t.Errorf("score 3: %+v %v", v, err)
	}
	if h := f.host(t, "192.0.2.5"); h.Class != store.Black {
		t.Errorf("not stored black: %+v", h)
	}
	v, _ = f.eng.DNSBL(ip("192.0.2.6"), score(2))
	if v.Class != store.Grey {
		t.Errorf("score 2: %+v", v)
	}
	v, _ = f.eng.DNSBL(ip("192.0.2.7"), score(-5))
	if v.Class != store.White {
		t.Errorf("score -5: %+v", v)
	}
	if h := f.host(t, "192.0.2.7"); h.Class != store.White || !h.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("allow-listed host %+v, want white for an hour", h)
	}
	// A white host from an allow list passes RCPT without greylisting.
	d, err := f.eng.Rcpt(ip("192.0.2.7"), "a@b.example", "u@example.org")
	if err != nil || d.Action != Pass {
		t.Errorf("RCPT of an allow-listed host: %+v %v", d, err)
	}
	// An allow list never undoes a black listing.
	v, _ = f.eng.DNSBL(ip("192.0.2.5"), score(-5))
	if v.Class != store.Black || f.host(t, "192.0.2.5").Class != store.Black {
		t.Errorf("allow list whitened a black host: %+v", v)
	}
}

func TestLookupUsesDNS(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, "9.2.0.192.zen.test. 300 IN A 127.0.0.2", "10.2.0.192.wl.test. 300 IN A 127.0.10.2")
	var sites []reputation.Site
	for _, s := range []string{"zen.test=127.0.0.[2..11]*3", "wl.test=127.0.[0..255].[1..3]*-5"} {
		site, _ := reputation.ParseSite(s)
		sites = append(sites, site)
	}
	d, err := reputation.NewDNSBL(reputation.DNSBLConfig{Sites: sites, Servers: []string{srv.Addr}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Config{Blacklist: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	f.eng.SetReputation(Reputation{DNSBL: d})
	for addr, want := range map[string]store.Class{"192.0.2.9": store.Black, "192.0.2.10": store.White, "192.0.2.11": store.Grey} {
		v, _ := f.eng.Classify(ip(addr))
		ch := f.eng.Lookup(ip(addr), v)
		if ch == nil {
			t.Fatalf("no lookup for grey %s", addr)
		}
		if got := <-ch; got.Class != want {
			t.Errorf("Lookup(%s) = %+v, want %v", addr, got, want)
		}
	}
	// Settled hosts need no lookup.
	v, _ := f.eng.Classify(ip("192.0.2.9"))
	if v.Class != store.Black || f.eng.Lookup(ip("192.0.2.9"), v) != nil {
		t.Errorf("a black host from the store is looked up again: %+v", v)
	}
	v, _ = f.eng.Classify(ip("203.0.113.1"))
	if f.eng.Lookup(ip("203.0.113.1"), v) != nil {
		t.Error("a statically listed host is looked up")
	}
}

func TestNetworkEscalation(t *testing.T) {
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{Nets: reputation.Escalation{Threshold: 3, Window: time.Hour, TTL: 6 * time.Hour}})
	f.put(t, "192.0.2.200", store.White, "greylist", t0.Add(whiteTTL))
	for i, addr := range []string{"192.0.2.1", "192.0.2.2"} {
		if err := f.eng.EarlyTalker(ip(addr), "early talker"); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Duration(i+1) * time.Minute)
	}
	if v := f.classify(t, "192.0.2.50"); v.Class != store.Grey {
		t.Fatalf("escalated after two hosts: %+v", v)
	}
	// Blacklisting the same host again counts once.
	f.eng.Blacklist(ip("192.0.2.2"), store.SourceDNSBL, "again")
	if v := f.classify(t, "192.0.2.50"); v.Class != store.Grey {
		t.Fatalf("one host counted twice: %+v", v)
	}
	f.eng.Blacklist(ip("192.0.2.3"), store.SourceTrap, "trap hit <x@y>")
	v := f.classify(t, "192.0.2.50")
	if v.Class != store.Black || !strings.HasPrefix(v.Reason, "network escalation: 3 black hosts in 192.0.2.0/24") {
		t.Fatalf("after three hosts: %+v", v)
	}
	if v := f.classify(t, "192.0.2.200"); v.Class != store.White {
		t.Errorf("a white host in the network lost its class: %+v", v)
	}
	if v := f.classify(t, "192.0.3.1"); v.Class != store.Grey {
		t.Errorf("the next network is black too: %+v", v)
	}
	hist, _ := f.eng.History(netip.MustParsePrefix("192.0.2.0/24"))
	if len(hist) != 1 || hist[0].Class != "black" {
		t.Errorf("network history %+v", hist)
	}
	f.clk.Advance(6*time.Hour + time.Second)
	if v := f.classify(t, "192.0.2.50"); v.Class != store.Grey {
		t.Errorf("after net_ttl: %+v", v)
	}
	// Hosts spread over more than the window do not escalate.
	g := newFixture(t, Config{})
	g.eng.SetReputation(Reputation{Nets: reputation.Escalation{Threshold: 2, Window: time.Hour}})
	g.eng.Blacklist(ip("198.51.100.1"), store.SourceDNSBL, "x")
	g.clk.Advance(2 * time.Hour)
	g.eng.Blacklist(ip("198.51.100.2"), store.SourceDNSBL, "x")
	if v := g.classify(t, "198.51.100.3"); v.Class != store.Grey {
		t.Errorf("escalated across windows: %+v", v)
	}
}

func TestASNEscalation(t *testing.T) {
	tab, err := reputation.ParseASN(strings.NewReader("198.51.100.0\t198.51.103.255\t64500\tZZ\tBULLETPROOF-EXAMPLE\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{ASN: tab, Nets: reputation.Escalation{ASNThreshold: 2, Window: time.Hour, TTL: time.Hour}})
	f.eng.Blacklist(ip("198.51.100.1"), store.SourceDNSBL, "x")
	if v := f.classify(t, "198.51.103.9"); v.Class != store.Grey {
		t.Fatalf("after one host: %+v", v)
	}
	f.eng.Blacklist(ip("198.51.102.1"), store.SourceDNSBL, "x")
	v := f.classify(t, "198.51.103.9")
	if v.Class != store.Black || !strings.Contains(v.Reason, "AS64500 (BULLETPROOF-EXAMPLE)") {
		t.Errorf("after two hosts in the AS: %+v", v)
	}
	if v := f.classify(t, "198.51.104.1"); v.Class != store.Grey {
		t.Errorf("outside the AS: %+v", v)
	}
}

func TestDropListClassify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drop.txt")
	os.WriteFile(path, []byte("192.0.2.0/24 ; SBL1\n"), 0o600)
	d, err := reputation.LoadDrop(path)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{Drop: d})
	f.put(t, "192.0.2.8", store.White, "greylist", t0.Add(whiteTTL))
	if err := f.eng.SetClass(store.HostPrefix(ip("192.0.2.9")), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]store.Class{"192.0.2.1": store.Black, "192.0.2.8": store.Black, "192.0.2.9": store.White, "192.0.3.1": store.Grey} {
		if v := f.classify(t, addr); v.Class != want {
			t.Errorf("%s: %+v, want %v", addr, v, want)
		}
	}
	if v := f.classify(t, "192.0.2.1"); v.Reason != "drop list drop.txt: 192.0.2.0/24 SBL1" {
		t.Errorf("reason %q", v.Reason)
	}
}

func TestHistoryBounded(t *testing.T) {
	f := newFixture(t, Config{})
	for i := 0; i < maxHistory+10; i++ {
		c := store.Black
		if i%2 == 1 {
			c = store.White
		}
		f.eng.SetClass(store.HostPrefix(ip("192.0.2.1")), c, "operator")
	}
	hist, _ := f.eng.History(store.HostPrefix(ip("192.0.2.1")))
	if len(hist) != maxHistory {
		t.Errorf("%d events kept, want %d", len(hist), maxHistory)
	}
	f.eng.Forget(store.HostPrefix(ip("192.0.2.1")))
	hist, _ = f.eng.History(store.HostPrefix(ip("192.0.2.1")))
	if last := hist[len(hist)-1]; last.Reason != "forgotten by operator" {
		t.Errorf("last event %+v", last)
	}
}

func TestBadKarmaStaysGreyAfterPass(t *testing.T) {
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{})
	f.whiten(t, "192.0.2.1")
	f.feedback(t, spam("192.0.2.1"), "grey")
	// The old triplet still passes, but the host is not white again.
	d, err := f.eng.Rcpt(ip("192.0.2.1"), "a@sender.example", "u@example.org")
	if err != nil || d.Action != Pass {
		t.Fatalf("RCPT after a spam verdict: %+v %v", d, err)
	}
	if v, err := f.eng.Accepted(ip("192.0.2.1"), "a@sender.example", d.Reason); err != nil || v.Class != store.Grey {
		t.Fatalf("accepted message after a spam verdict: %+v %v, want still grey", v, err)
	}
	if v := f.classify(t, "192.0.2.1"); v.Class != store.Grey {
		t.Errorf("whitelisted again with bad karma: %+v", v)
	}
	hist, _ := f.eng.History(store.HostPrefix(ip("192.0.2.1")))
	if last := hist[len(hist)-1]; !strings.Contains(last.Reason, "not whitelisted: karma -1.00") {
		t.Errorf("the refused whitening is not in the history: %+v", last)
	}
	// Once the karma has faded, a pass whitelists again.
	f.clk.Advance(40 * 24 * time.Hour) // more than five half-lives
	f.whiten(t, "192.0.2.1")
	if v := f.classify(t, "192.0.2.1"); v.Class != store.White {
		t.Errorf("after the karma faded: %+v", v)
	}
}

// Verdicts about one host arriving at once (two log followers, the API)
// all count.
func TestFeedbackConcurrentVerdictsAllCount(t *testing.T) {
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{})
	const n = 40
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.eng.Feedback(ham("192.0.2.9")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b, ok, err := f.st.Get(karmaKind, "192.0.2.9")
	if err != nil || !ok {
		t.Fatalf("no karma record: %v", err)
	}
	k, err := reputation.UnmarshalKarma(b)
	if err != nil || k.Ham != n {
		t.Errorf("karma after %d concurrent ham verdicts: %+v (%v), want %d counted", n, k, err, n)
	}
}
