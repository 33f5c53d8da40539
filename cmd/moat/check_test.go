package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/server/servertest"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/tlstest"
)

// lineOf returns the line of the check's output about what.
func lineOf(out, what string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == what {
			return l
		}
	}
	return ""
}

// A configuration with errors: every one is listed with its key, and the
// command fails.
func TestCheckListsEveryProblem(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), "listen = \"25\"\n[greylist]\nipv6_prefix = 3\n[tarpit]\nmax_conns = 0\n")
	out, err := moat(t, cfg, "check")
	if err == nil || !strings.Contains(err.Error(), "3 problems") {
		t.Fatalf("moat check: %v, want it to fail with 3 problems\n%s", err, out)
	}
	for _, key := range []string{"listen", "greylist.ipv6_prefix", "tarpit.max_conns"} {
		if !strings.Contains(out, "FAIL  "+cfg+": config: "+key+":") {
			t.Errorf("moat check does not list %s:\n%s", key, out)
		}
	}
}

// moat check reads the backend's EHLO, looks at the store without
// changing it (read-only with no daemon, through the daemon when one
// runs), and loads the TLS files; a backend that does not answer and a
// certificate about to expire are warnings, a key that does not load a
// failure.
func TestCheck(t *testing.T) {
	dir := shortDir(t)
	be := servertest.StartBackend(t)
	be.SetEHLO("PIPELINING", "SIZE 10240000", "SMTPUTF8")
	base := fmt.Sprintf("listen = %q\nbackend = %q\n[reputation]\ndns_servers = [\"127.0.0.1:9\"]\n", freeAddr(t), be.Addr())
	cfg := writeConfigOnly(t, dir, base)
	db := filepath.Join(dir, "data", "moat.db")

	out, err := moat(t, cfg, "check")
	if err != nil {
		t.Fatalf("moat check: %v\n%s", err, out)
	}
	if l := lineOf(out, "backend"); !strings.HasPrefix(l, "ok") || !strings.HasSuffix(l, "answers; its EHLO offers SIZE 10240000 SMTPUTF8") {
		t.Errorf("backend line %q, want what its EHLO offers", l)
	}
	if l := lineOf(out, "store"); !strings.HasPrefix(l, "ok") || !strings.Contains(l, "none yet") {
		t.Errorf("store line %q, want none yet", l)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Fatalf("moat check made %s (%v)", db, err)
	}
	if l := lineOf(out, "domains"); !strings.HasPrefix(l, "ok") || !strings.Contains(l, "no recipient is taken for a relay attempt") {
		t.Errorf("domains line %q, want none, and what that means", l)
	}
	if !strings.HasSuffix(out, "moat can run with "+cfg+" (0 warnings)\n") {
		t.Errorf("moat check ends %q", out)
	}

	st, err := bolt.Open(db, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.PutHost(store.Host{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Class: store.Black, Reason: "test"})
	st.AddTrap("trap@example.org")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(db)
	out = runMoat(t, cfg, "check")
	if l := lineOf(out, "store"); !strings.Contains(l, "read-only") || !strings.Contains(l, "0 white, 0 grey, 1 black hosts") || !strings.Contains(l, "1 traps") {
		t.Errorf("store line %q, want what the file holds, read-only", l)
	}
	if after, _ := os.ReadFile(db); string(after) != string(before) {
		t.Error("moat check changed the store file")
	}

	startDaemon(t, cfg)
	out = runMoat(t, cfg, "check")
	if l := lineOf(out, "store"); !strings.Contains(l, "through the running daemon") || !strings.Contains(l, "1 black hosts") {
		t.Errorf("store line %q with a daemon running, want its figures", l)
	}
}

func TestCheckWarnsAndFails(t *testing.T) {
	dir := t.TempDir()
	cert, key := tlstest.WriteCert(t, dir, "mx.example.org", time.Now().Add(3*24*time.Hour))
	cfg := writeConfig(t, dir, fmt.Sprintf("listen = %q\nbackend = %q\n[tls]\ncert = %q\nkey = %q\n[reputation]\ndns_servers = [\"127.0.0.1:9\"]\n",
		freeAddr(t), freeAddr(t), cert, key))
	out, err := moat(t, cfg, "check")
	if err != nil {
		t.Fatalf("moat check with warnings only: %v\n%s", err, out)
	}
	if l := lineOf(out, "backend"); !strings.HasPrefix(l, "WARN") {
		t.Errorf("backend that does not answer: %q, want a warning", l)
	}
	if l := lineOf(out, "tls"); !strings.HasPrefix(l, "WARN") || !strings.Contains(l, "mx.example.org") || !strings.Contains(l, "(in 2 days)") {
		t.Errorf("certificate expiring in 3 days: %q, want a warning with its name and what is left", l)
	}
	os.WriteFile(key, []byte("not a key"), 0o600)
	out, err = moat(t, cfg, "check")
	if err == nil || !strings.HasPrefix(lineOf(out, "tls"), "FAIL") {
		t.Errorf("a key that does not load: %v, tls line %q; want the command to fail on it", err, lineOf(out, "tls"))
	}
}
