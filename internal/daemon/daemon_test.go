package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/admin"
	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/server/servertest"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/tarpit"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// parse is the configuration text with its data_dir in dir.
func parse(t *testing.T, dir, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf("data_dir = %q\n%s", dir, text)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The engine follows the configuration and reads time only from the clock
// it is given, and building it touches no file: a simulation can run it
// over days in a moment.
func TestNewEngineRunsOnTheClockItIsGiven(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "never-made")
	cfg := parse(t, dataDir, `whitelist = ["192.0.2.0/24"]
[greylist]
min_retry = "10m"
[bait]
domain = "example.org"
`)
	clk := clock.NewFake(time.Date(2026, 3, 3, 6, 0, 0, 0, time.UTC))
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng, err := NewEngine(cfg, st, clk)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := eng.Classify(netip.MustParseAddr("192.0.2.5")); err != nil || v.Class != store.White || !v.Static {
		t.Errorf("a host in the configured whitelist: %+v, %v; want white from the configuration", v, err)
	}
	client := netip.MustParseAddr("198.51.100.1")
	rcpt := func() classify.Action {
		t.Helper()
		d, err := eng.Rcpt(client, "a@sender.example", "u@example.org")
		if err != nil {
			t.Fatal(err)
		}
		return d.Action
	}
	if a := rcpt(); a != classify.Defer {
		t.Fatalf("first attempt: %v, want Defer", a)
	}
	clk.Advance(9 * time.Minute)
	if a := rcpt(); a != classify.Defer {
		t.Errorf("retry after 9m with min_retry 10m: %v, want Defer", a)
	}
	clk.Advance(2 * time.Minute)
	if a := rcpt(); a != classify.Pass {
		t.Errorf("retry after 11m: %v, want Pass", a)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("NewEngine made %s (%v): it must touch no file", dataDir, err)
	}
}

// freeAddr is a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// shortDir is a temporary directory with a path short enough for the
// admin socket inside it.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "moat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// A daemon serves SMTP and its admin socket until its context ends, then
// returns cleanly and leaves no socket behind. A backend that does not
// answer is said at start.
func TestDaemonRunsUntilCancelled(t *testing.T) {
	dir := shortDir(t)
	cfg := parse(t, dir, fmt.Sprintf(`listen = %q
hostname = "mx.example.org"
backend = %q
[greylist]
greet_delay = "10ms"
[reputation]
dns_servers = ["127.0.0.1:9"]
`, freeAddr(t), freeAddr(t)))
	var logBuf servertest.LogBuffer
	d, err := New(cfg, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	waitLog(t, &logBuf, "warning that the backend does not answer", func() bool {
		return strings.Contains(logBuf.String(), `level=WARN msg="backend: cannot read its EHLO; grey hosts are offered what they were" backend=`+cfg.Backend)
	})

	var c net.Conn
	for deadline := time.Now().Add(10 * time.Second); c == nil; time.Sleep(10 * time.Millisecond) {
		if c, err = net.Dial("tcp", cfg.Listen); err != nil && time.Now().After(deadline) {
			t.Fatalf("moat does not listen on %s: %v", cfg.Listen, err)
		}
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if banner, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(banner, "220") || !strings.Contains(banner, "mx.example.org") {
		t.Errorf("banner %q, %v; want a 220 naming mx.example.org", banner, err)
	}
	c.Close()
	var st admin.Status
	if err := admin.NewClient(cfg.AdminSocket()).Do("GET", "/v1/status", nil, &st); err != nil || !st.Running {
		t.Errorf("status over the admin socket: %+v, %v; want running", st, err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if _, err := os.Stat(cfg.AdminSocket()); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
}

// The offline service builds a trap miner only for the commands that mine.
func TestOffline(t *testing.T) {
	cfg := parse(t, t.TempDir(), "")
	st, err := OpenStore(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, mining := range []bool{false, true} {
		svc, err := Offline(cfg, st, mining, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if svc.Live != nil || (svc.Miner != nil) != mining {
			t.Errorf("Offline(mining %v): live %v, miner %v", mining, svc.Live != nil, svc.Miner != nil)
		}
	}
}

// The configuration's default final replies are the split classify makes:
// what proves a bot is told 250, every other reason a host can be black
// for is deferred; and every such reason has a key.
func TestFinalReplyDefaultsFollowProof(t *testing.T) {
	finals := tarpitFinals(config.Default().Tarpit.FinalReply)
	for src := store.Source(0); src.String() != fmt.Sprintf("source(%d)", uint8(src)); src++ {
		switch src {
		case store.SourceUnknown, store.SourceGreylist, store.SourceAccepted, store.SourceDNSWL:
			// Never the reason a host is black (the tarpit defers an
			// unknown one).
			if _, ok := finals[src]; ok {
				t.Errorf("a final reply for %s, which makes no host black", src)
			}
			continue
		}
		want := tarpit.Defer
		if classify.Proves(src) {
			want = tarpit.Accept
		}
		if got, ok := finals[src]; !ok || got != want {
			t.Errorf("default final reply for %s: %v (set %v), want %v", src, got, ok, want)
		}
	}
}

// A relay attempt is judged against the domains the configuration says
// the backend takes mail for (domains), never against the trap domains: an
// operator who keeps traps in one of several domains must not see a listed
// sender's mail to another one taken for a relay attempt, told queued and
// dropped. Without domains nothing is a relay attempt. A reload applies
// the list.
func TestRelayAttemptNeedsOurDomains(t *testing.T) {
	dir := t.TempDir()
	cfg := parse(t, dir, "[traps]\ndomains = [\"traps.example.test\"]\n")
	d := &Daemon{words: NewWords(cfg, false), domains: newOurDomains(bolt.Memory(bolt.Options{}), quiet, time.Now)}
	d.domains.set(cfg)
	if d.tarpitConfig(cfg).Ours != nil || d.dialogConfig(cfg, nil).Ours != nil {
		t.Error("with traps.domains but no domains, recipients are judged for relay attempts")
	}
	cfg = parse(t, dir, "domains = [\"example.test\", \"Example.NET.\"]\n[traps]\ndomains = [\"traps.example.test\"]\n")
	d.domains.set(cfg)
	for _, ours := range []func(string) bool{d.tarpitConfig(cfg).Ours, d.dialogConfig(cfg, nil).Ours} {
		if ours == nil {
			t.Fatal("domains set, and no recipient is judged for a relay attempt")
		}
		for dom, want := range map[string]bool{
			"example.test": true, "EXAMPLE.test.": true, "example.net": true,
			"traps.example.test": false, "foreign.example": false, "sub.example.test": false,
		} {
			if got := ours(dom); got != want {
				t.Errorf("ours(%q) = %v, want %v", dom, got, want)
			}
		}
	}
	if needsRestart("domains") {
		t.Error("domains needs a restart; a reload should apply it")
	}
}

// A domain the backend accepted a recipient at is ours, though the
// operator did not list it: the relay check only ever gets more lenient
// for it, and moat says so once. A refusal teaches nothing. What was
// learnt survives a restart (it is in the store), and a reload that lists
// the domain keeps it ours.
func TestOurDomainsLearnFromTheBackend(t *testing.T) {
	st := bolt.Memory(bolt.Options{})
	defer st.Close()
	var logBuf servertest.LogBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	cfg := parse(t, t.TempDir(), "domains = [\"example.test\"]\n")
	o := newOurDomains(st, log, time.Now)
	o.set(cfg)
	ours := o.ours(cfg)
	client := netip.MustParseAddr("192.0.2.7")
	ok := smtp.Reply{Code: 250, Lines: []string{"2.1.5 Ok"}}
	denied := smtp.Reply{Code: 554, Lines: []string{"5.7.1 <x@foreign.example>: Relay access denied"}}

	if ours("forgotten.example") {
		t.Fatal("an unlisted domain is ours before the backend took mail there")
	}
	o.backendRcpt(client, "bob@foreign.example", denied)
	o.backendRcpt(client, "bob@[192.0.2.1]", ok)
	o.backendRcpt(client, "alice@Forgotten.Example", ok)
	o.backendRcpt(client, "carol@forgotten.example", ok)
	o.backendRcpt(client, "dave@example.test", ok)
	if !ours("forgotten.example.") || ours("foreign.example") || ours("[192.0.2.1]") {
		t.Errorf("after the backend's answers: forgotten %v, foreign %v, literal %v; want only forgotten ours",
			ours("forgotten.example."), ours("foreign.example"), ours("[192.0.2.1]"))
	}
	if n := strings.Count(logBuf.String(), "not in domains"); n != 1 || !strings.Contains(logBuf.String(), "domain=forgotten.example client=192.0.2.7") {
		t.Errorf("want one warning naming forgotten.example and the client, got %d:\n%s", n, logBuf.String())
	}
	// A restart: learnt from the store.
	o2 := newOurDomains(st, quiet, time.Now)
	o2.set(cfg)
	if !o2.ours(cfg)("forgotten.example") || o2.ours(cfg)("foreign.example") {
		t.Error("what the backend taught is lost at a restart")
	}
	// Without domains nothing is a relay attempt, learnt or not.
	empty := parse(t, t.TempDir(), "")
	o2.set(empty)
	if o2.ours(empty) != nil {
		t.Error("without domains, recipients are judged for relay attempts")
	}
}
