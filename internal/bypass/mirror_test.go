package bypass

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/traps"
)

const (
	whiteTTL = 36 * 24 * time.Hour
	trapAddr = "trap@example.org"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newEngine is moat's engine over a bolt store at path, on the wall
// clock, as the daemon builds it.
func newEngine(t *testing.T, path string, cfg classify.Config) (*classify.Engine, *bolt.Store) {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return engineOver(t, st, clock.Real{}, cfg), st
}

// engineOver is moat's engine over st, with the test's trap.
func engineOver(t *testing.T, st store.Store, clk clock.Clock, cfg classify.Config) *classify.Engine {
	t.Helper()
	ts, err := traps.New(st, []string{trapAddr})
	if err != nil {
		t.Fatal(err)
	}
	g := greylist.New(greylist.Config{MinRetry: time.Minute, RetryWindow: 24 * time.Hour, PassTTL: whiteTTL}, st, clk)
	cfg.BlackTTL, cfg.WhiteTTL, cfg.GreyTTL = 24*time.Hour, whiteTTL, 24*time.Hour
	return classify.New(cfg, st, clk, g, ts)
}

func newMirror(t *testing.T, r *rig, eng *classify.Engine) *Mirror {
	t.Helper()
	m := NewMirror(r.tab, eng, clock.Real{}, quiet)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.OnChange(nil) })
	return m
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// The sets follow the store: a greylist pass (an accepted message), the
// operator's and the configuration's white entries enter; a host that
// turns black leaves at once, and reaches moat on its next connection.
func TestMirrorFollowsEngine(t *testing.T) {
	r := newRig(t)
	eng, _ := newEngine(t, filepath.Join(t.TempDir(), "moat.db"), classify.Config{
		Whitelist: []netip.Prefix{netip.MustParsePrefix("127.0.7.0/24")},
	})
	if _, err := eng.Accepted(addr("127.0.0.5"), "a@example.com", "greylist retry"); err != nil {
		t.Fatal(err)
	}
	newMirror(t, r, eng)
	for src, want := range map[string]string{"127.0.0.5": "bypass", "127.0.7.3": "bypass", "127.0.0.6": "moat"} {
		if got := r.reach(t, src); got != want {
			t.Errorf("after start, %s reached %s, want %s", src, got, want)
		}
	}
	if got := kernelTimeouts(t, r.tab)["127.0.0.5"]; got < whiteTTL-2*time.Minute || got > whiteTTL {
		t.Errorf("accepted host's timeout %v, want its white time %v", got, whiteTTL)
	}

	// The operator whitens a host: it bypasses at once, with no timeout.
	if err := eng.SetClass(store.HostPrefix(addr("127.0.0.6")), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "127.0.0.6"); got != "bypass" {
		t.Errorf("operator's white host reached %s", got)
	}
	if got, ok := kernelTimeouts(t, r.tab)["127.0.0.6"]; !ok || got != 0 {
		t.Errorf("operator's white host: timeout %v (in set %v), want none", got, ok)
	}

	// Mid-test, the accepted host turns black.
	if err := eng.Blacklist(addr("127.0.0.5"), store.SourceTrap, "trap hit <"+trapAddr+">"); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "127.0.0.5"); got != "moat" {
		t.Errorf("blacklisted host's next connection reached %s, want moat", got)
	}
	// The operator forgets a host: it is grey and meets moat.
	if err := eng.Forget(store.HostPrefix(addr("127.0.0.6"))); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "127.0.0.6"); got != "moat" {
		t.Errorf("forgotten host reached %s, want moat", got)
	}
}

// A white network leaves the set when a host in it turns black: the kernel
// knows no precedence, so moat decides for the whole network.
func TestMirrorWhiteNetworkWithBlackHost(t *testing.T) {
	r := newRig(t)
	eng, _ := newEngine(t, filepath.Join(t.TempDir(), "moat.db"), classify.Config{})
	newMirror(t, r, eng)
	if err := eng.SetClass(netip.MustParsePrefix("127.0.9.0/24"), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "127.0.9.5"); got != "bypass" {
		t.Fatalf("host of a white network reached %s", got)
	}
	if err := eng.SetClass(store.HostPrefix(addr("127.0.9.5")), store.Black, "operator"); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"127.0.9.5", "127.0.9.6"} {
		if got := r.reach(t, src); got != "moat" {
			t.Errorf("with a black host in the network, %s reached %s, want moat", src, got)
		}
	}
	if err := eng.Forget(store.HostPrefix(addr("127.0.9.5"))); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "127.0.9.6"); got != "bypass" {
		t.Errorf("with the black host forgotten, 127.0.9.6 reached %s, want bypass", got)
	}
}

// moat stops and starts again: a white session that went through the
// bypass goes on, new white connections bypass while moat is down, and
// the restarted moat finds its sets as it left them.
func TestMoatRestartKeepsWhiteSession(t *testing.T) {
	r := newRig(t)
	echoListener(t, r.bypass)
	path := filepath.Join(t.TempDir(), "moat.db")
	eng, st := newEngine(t, path, classify.Config{})
	if _, err := eng.Accepted(addr("127.0.0.5"), "a@example.com", "greylist retry"); err != nil {
		t.Fatal(err)
	}
	m := newMirror(t, r, eng)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()

	say := session(t, "127.0.0.5", r.moat.port())
	if got := say("MAIL FROM:<a@example.com>"); got != "bypass MAIL FROM:<a@example.com>\n" {
		t.Fatalf("white session answered %q", got)
	}

	// moat stops: its mirror ends, its store closes, its table stays.
	stop()
	<-done
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := say("RCPT TO:<b@example.org>"); got != "bypass RCPT TO:<b@example.org>\n" {
		t.Errorf("while moat is down the white session answered %q", got)
	}
	if got := r.reach(t, "127.0.0.5"); got != "bypass" {
		t.Errorf("while moat is down a new white connection reached %s", got)
	}

	// moat starts again.
	eng2, _ := newEngine(t, path, classify.Config{})
	r2 := &rig{moat: r.moat, bypass: r.bypass, tab: r.open(t)}
	newMirror(t, r2, eng2)
	if got := say("DATA"); got != "bypass DATA\n" {
		t.Errorf("after the restart the white session answered %q", got)
	}
	if got := r.reach(t, "127.0.0.6"); got != "moat" {
		t.Errorf("grey host reached %s after the restart", got)
	}
}

// The table deleted by hand is rebuilt from the store at the next sync.
func TestMirrorRebuildsDeletedTable(t *testing.T) {
	r := newRig(t)
	eng, _ := newEngine(t, filepath.Join(t.TempDir(), "moat.db"), classify.Config{})
	if _, err := eng.Accepted(addr("127.0.0.5"), "a@example.com", "greylist retry"); err != nil {
		t.Fatal(err)
	}
	m := newMirror(t, r, eng)
	r.tab.conn.DelTable(r.tab.tab)
	if err := r.tab.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "127.0.0.5"); got != "moat" {
		t.Fatalf("with the table deleted, the white host reached %s", got)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "127.0.0.5"); got != "bypass" {
		t.Errorf("after the sync the white host reached %s, want bypass", got)
	}
	if got := kernelTimeouts(t, r.tab)["127.0.0.5"]; got < whiteTTL-2*time.Minute || got > whiteTTL {
		t.Errorf("rebuilt element's timeout %v, want the host's remaining white time", got)
	}
}

// A white host that names a trap to the mail server — which moat no
// longer sees — leaves the set: the log line is the evidence.
func TestTrapInMailLogTakesHostOutOfSet(t *testing.T) {
	r := newRig(t)
	eng, _ := newEngine(t, filepath.Join(t.TempDir(), "moat.db"), classify.Config{})
	for _, a := range []string{"127.0.0.5", "127.0.0.6"} {
		if _, err := eng.Accepted(addr(a), "a@example.com", "greylist retry"); err != nil {
			t.Fatal(err)
		}
	}
	m := newMirror(t, r, eng)
	if got := r.reach(t, "127.0.0.5"); got != "bypass" {
		t.Fatalf("white host reached %s", got)
	}
	// A line that names a trap in the HELO only, and one about another
	// host, change nothing.
	m.LogLine("Mar  3 06:25:02 mx postfix/bypass/smtpd[1207]: NOQUEUE: reject: RCPT from x[127.0.0.6]: 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown; from=<a@example.com> to=<nobody@example.org> proto=ESMTP helo=<reject: RCPT from y[127.0.0.5]: 550 5.1.1 <" + trapAddr + ">: Recipient address rejected: x>")
	if got := r.reach(t, "127.0.0.5"); got != "bypass" {
		t.Fatalf("a trap in another host's HELO moved 127.0.0.5: it reached %s", got)
	}
	m.LogLine("Mar  3 06:25:03 mx postfix/bypass/smtpd[1207]: NOQUEUE: reject: RCPT from mail.example.com[127.0.0.5]:4711: 550 5.1.1 <Trap@Example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@example.com> to=<Trap@Example.org> proto=ESMTP helo=<mail.example.com>")
	if got := r.reach(t, "127.0.0.5"); got != "moat" {
		t.Errorf("white host that named a trap to the mail server reached %s, want moat", got)
	}
	v, err := eng.Classify(addr("127.0.0.5"))
	if err != nil || v.Class == store.White {
		t.Errorf("after the trap the host is %s (%v), want no longer white", v.Class, err)
	}
	if got := r.reach(t, "127.0.0.6"); got != "bypass" {
		t.Errorf("the other white host reached %s", got)
	}
}

// A message from a white host, as the mail server logs it, renews its
// white time and its element's timeout.
func TestMailLogRenewsWhiteHost(t *testing.T) {
	r := newRig(t)
	clk := clock.NewFake(time.Now())
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	eng := engineOver(t, st, clk, classify.Config{})
	if _, err := eng.Accepted(addr("127.0.0.5"), "a@example.com", "greylist retry"); err != nil {
		t.Fatal(err)
	}
	// Ten days on, by moat's clock, moat starts: the element gets the
	// white time that remains.
	clk.Advance(10 * 24 * time.Hour)
	m := NewMirror(r.tab, eng, clk, quiet)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer eng.OnChange(nil)
	if got := kernelTimeouts(t, r.tab)["127.0.0.5"]; got != whiteTTL-10*24*time.Hour {
		t.Errorf("element's timeout %v, want the remaining white time %v", got, whiteTTL-10*24*time.Hour)
	}
	// The host sends a message through the bypass.
	m.LogLine("2026-03-03T06:25:02.123456+01:00 mx postfix/bypass/smtpd[1207]: 4C1A22E01F: client=mail.example.com[127.0.0.5]:4711")
	h, ok, err := st.Host(store.HostPrefix(addr("127.0.0.5")))
	if err != nil || !ok || !h.Expires.Equal(clk.Now().Add(whiteTTL)) {
		t.Fatalf("entry after the logged message: %+v %v %v, want expiry %v", h, ok, err, clk.Now().Add(whiteTTL))
	}
	if got := kernelTimeouts(t, r.tab)["127.0.0.5"]; got < whiteTTL-2*time.Minute || got > whiteTTL {
		t.Errorf("renewed element's timeout %v, want %v", got, whiteTTL)
	}
}
