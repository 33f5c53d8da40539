package classify

import (
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"moat/internal/reputation"
	"moat/internal/store"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func (f *fixture) whiteUntil(t *testing.T, p string) (time.Time, bool) {
	t.Helper()
	until, ok, err := f.eng.WhiteUntil(pfx(p))
	if err != nil {
		t.Fatalf("WhiteUntil(%s): %v", p, err)
	}
	return until, ok
}

// A prefix is white for a kernel bypass only when every address in it
// classifies white.
func TestWhiteUntil(t *testing.T) {
	f := newFixture(t, Config{
		Whitelist: []netip.Prefix{pfx("192.0.2.0/24")},
		Blacklist: []netip.Prefix{pfx("198.51.100.128/25")},
	})
	f.whiten(t, "203.0.113.5")
	f.put(t, "198.51.100.200", store.White, "greylist", t0.Add(whiteTTL)) // inside the configured blacklist
	if err := f.eng.SetClass(pfx("203.0.114.0/24"), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.SetClass(pfx("198.51.100.0/24"), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p     string
		white bool
		until time.Time
	}{
		{"192.0.2.0/24", true, time.Time{}}, // the configuration's whitelist
		{"192.0.2.9/32", true, time.Time{}}, // inside it
		{"203.0.113.5/32", true, f.clk.Now().Add(whiteTTL)},
		{"203.0.114.0/24", true, time.Time{}},     // the operator's network
		{"198.51.100.200/32", false, time.Time{}}, // the configured blacklist wins
		{"198.51.100.0/24", false, time.Time{}},   // a configured black prefix inside
		{"203.0.113.6/32", false, time.Time{}},    // unknown
	} {
		until, ok := f.whiteUntil(t, tc.p)
		if ok != tc.white || !until.Equal(tc.until) {
			t.Errorf("WhiteUntil(%s) = %v, %v; want %v, %v", tc.p, until, ok, tc.until, tc.white)
		}
	}

	// A black host inside a white network takes the network out; once
	// it is forgotten, the network is white again.
	if err := f.eng.Blacklist(ip("203.0.114.7"), store.SourceTrap, "trap hit <"+trap+">"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.whiteUntil(t, "203.0.114.0/24"); ok {
		t.Error("a white network with a black host in it is white as a whole")
	}
	if err := f.eng.Forget(pfx("203.0.114.7/32")); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.whiteUntil(t, "203.0.114.0/24"); !ok {
		t.Error("with the black host forgotten, the network is not white")
	}

	// White lists the same.
	got := map[netip.Prefix]time.Time{}
	all, err := f.eng.White()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range all {
		got[w.Prefix] = w.Until
	}
	want := map[netip.Prefix]time.Time{
		pfx("192.0.2.0/24"):   {},
		pfx("203.0.113.5/32"): f.clk.Now().Add(whiteTTL),
		pfx("203.0.114.0/24"): {},
	}
	if len(got) != len(want) {
		t.Errorf("White = %v, want %v", got, want)
	}
	for p, u := range want {
		if g, ok := got[p]; !ok || !g.Equal(u) {
			t.Errorf("White: %s until %v (listed %v), want until %v", p, g, ok, u)
		}
	}
}

// An imported network list takes out a white network it overlaps, unless
// the operator whitened it (the operator's word stands against the list).
func TestWhiteUntilDropList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drop.txt")
	if err := os.WriteFile(path, []byte("192.0.2.64/26 ; SBL1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := reputation.LoadDrop(path)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{Drop: d})
	for _, h := range []store.Host{
		{Prefix: pfx("192.0.2.0/24"), Class: store.White, Source: store.SourceImport, Expires: t0.Add(whiteTTL)},
		{Prefix: pfx("192.0.3.0/24"), Class: store.White, Source: store.SourceOperator},
	} {
		if err := f.st.PutHost(h); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := f.whiteUntil(t, "192.0.2.0/24"); ok {
		t.Error("an imported white network overlapping a DROP list is white as a whole")
	}
	if _, ok := f.whiteUntil(t, "192.0.3.0/24"); !ok {
		t.Error("the operator's white network outside the list is not white")
	}
}

// Every host write of the engine is heard, after the store has it.
func TestOnChangeHearsEveryHostWrite(t *testing.T) {
	f := newFixture(t, Config{})
	type heard struct {
		p      netip.Prefix
		stored bool
	}
	var mu sync.Mutex
	var got []heard
	f.eng.OnChange(func(p netip.Prefix) {
		_, ok, _ := f.st.Host(p)
		mu.Lock()
		got = append(got, heard{p, ok})
		mu.Unlock()
	})
	f.eng.Rcpt(ip("192.0.2.1"), "a@sender.example", "u@example.org") // first sight: listed grey
	f.whiten(t, "192.0.2.2")                                         // listed grey, then white by an accepted message
	if err := f.eng.SetClass(pfx("192.0.2.3/32"), store.Black, "operator"); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Hour)
	if err := f.eng.Seen(ip("192.0.2.2"), f.classify(t, "192.0.2.2")); err != nil { // renewed
		t.Fatal(err)
	}
	if err := f.eng.Forget(pfx("192.0.2.2/32")); err != nil {
		t.Fatal(err)
	}
	f.eng.OnChange(nil)
	if err := f.eng.SetClass(pfx("192.0.2.4/32"), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	h := func(p string, stored bool) heard { return heard{pfx(p), stored} }
	want := []heard{h("192.0.2.1/32", true), h("192.0.2.2/32", true), h("192.0.2.2/32", true),
		h("192.0.2.3/32", true), h("192.0.2.2/32", true), h("192.0.2.2/32", false)}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("heard %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("heard %v, want %v", got, want)
			break
		}
	}
}

// A trap the mail server was asked for weighs as a trap named to moat.
func TestTrapLogged(t *testing.T) {
	f := newFixture(t, Config{})
	if d, err := f.eng.TrapLogged(ip("192.0.2.1"), "nobody@example.org"); err != nil || d.Action != Accept {
		t.Errorf("not a trap: %+v %v, want nothing done", d, err)
	}
	if h, ok, _ := f.st.Host(pfx("192.0.2.1/32")); ok {
		t.Errorf("a recipient that is no trap stored %+v", h)
	}
	// Nobody vouches for this host: black.
	if d, err := f.eng.TrapLogged(ip("192.0.2.1"), trap); err != nil || d.Action != Trap {
		t.Errorf("unknown host: %+v %v, want a trap hit", d, err)
	}
	if v := f.classify(t, "192.0.2.1"); v.Class != store.Black || v.Source != store.SourceTrap {
		t.Errorf("unknown host after the trap: %+v, want black by trap", v)
	}
	// A white host is vouched for: not blacklisted, but no longer white.
	f.whiten(t, "192.0.2.2")
	if d, err := f.eng.TrapLogged(ip("192.0.2.2"), trap); err != nil || d.Action != Refuse {
		t.Errorf("white host: %+v %v, want refused (vouched for)", d, err)
	}
	if v := f.classify(t, "192.0.2.2"); v.Class != store.Grey {
		t.Errorf("white host after the trap: %+v, want grey (karma)", v)
	}
}

// An operator's own white entry for a host in the configured blacklist
// releases it (Classify), and the kernel bypass says the same.
func TestWhiteUntilFollowsOperatorRelease(t *testing.T) {
	f := newFixture(t, Config{Blacklist: []netip.Prefix{pfx("198.51.100.0/24")}})
	if err := f.eng.SetClass(pfx("198.51.100.7/32"), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	v, err := f.eng.Classify(netip.MustParseAddr("198.51.100.7"))
	if err != nil || v.Class != store.White {
		t.Fatalf("Classify = %+v, %v; want white (released by the operator)", v, err)
	}
	if _, ok := f.whiteUntil(t, "198.51.100.7/32"); !ok {
		t.Error("WhiteUntil says not white where Classify says white")
	}
	if _, ok := f.whiteUntil(t, "198.51.100.8/32"); ok {
		t.Error("WhiteUntil says white for a blacklisted host with no entry")
	}
}
