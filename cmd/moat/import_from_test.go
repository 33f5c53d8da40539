package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/store"
	"moat/internal/store/bolt"
)

// spamdbText is what spamdb prints for one of each entry, around now.
func spamdbText() string {
	now := time.Now().Unix()
	return fmt.Sprintf("WHITE|192.0.2.10|||%d|%d|%d|1|3\n", now-86400, now-80000, now+86400) +
		fmt.Sprintf("GREY|203.0.113.5|mx.example.net|<a@example.net>|<b@example.org>|%d|%d|%d|1|0\n", now-900, now+13500, now+13500) +
		fmt.Sprintf("TRAPPED|192.0.2.66|%d\n", now+3600) +
		"SPAMTRAP|<trap@example.org>\n"
}

// moatIn is moat with stdin on standard input.
func moatIn(cfg string, stdin string, args ...string) (string, error) {
	root := rootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"-c", cfg}, args...))
	err := root.Execute()
	return out.String(), err
}

func classOf(t *testing.T, st store.Store, addr string) string {
	t.Helper()
	h, ok, err := st.Host(store.HostPrefix(netip.MustParseAddr(addr)))
	if err != nil || !ok {
		return "none"
	}
	return h.Class.String() + "/" + h.Source.String()
}

// With no daemon the command opens the store itself; a file with a bad
// line is refused whole, naming the line.
func TestImportFromSpamdb(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte(spamdbText()+"WHITE|192.0.2.300|||1|2|3|0|0\n"), 0o600)
	if _, err := moatIn(cfg, "", "import", "--from", "spamdb", bad); err == nil ||
		!strings.Contains(err.Error(), "line 5:") || !strings.Contains(err.Error(), "nothing imported") {
		t.Fatalf("a file with a bad fifth line: %v, want an error naming line 5", err)
	}
	if list := runMoat(t, cfg, "hosts", "list"); strings.Contains(list, "192.0.2.10") {
		t.Fatalf("the refused file was half imported:\n%s", list)
	}

	out, err := moatIn(cfg, spamdbText(), "import", "--from", "spamdb", "-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "imported from spamdb: 1 white, 1 black, 1 traps, 1 triplets") {
		t.Errorf("import printed %q", out)
	}
	st, err := bolt.Open(filepath.Join(dir, "data", "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for addr, want := range map[string]string{"192.0.2.10": "white/import", "192.0.2.66": "black/import"} {
		if got := classOf(t, st, addr); got != want {
			t.Errorf("%s is %s, want %s", addr, got, want)
		}
	}
	if traps, _ := st.Traps(); len(traps) != 1 || traps[0] != "trap@example.org" {
		t.Errorf("traps %q", traps)
	}
}

// With a daemon, the file goes through its admin socket, and what it
// holds applies to the running engine at once.
func TestImportFromThroughDaemon(t *testing.T) {
	cfgPath := writeConfig(t, shortDir(t), "")
	var st store.Store
	serveAdmin(t, cfgPath, func(s store.Store) store.Store { st = s; return s })

	file := filepath.Join(t.TempDir(), "spamdb.txt")
	os.WriteFile(file, []byte(spamdbText()), 0o600)
	out := runMoat(t, cfgPath, "import", "--from", "spamdb", file)
	if !strings.Contains(out, "imported from spamdb: 1 white, 1 black, 1 traps, 1 triplets") {
		t.Errorf("import printed %q", out)
	}
	if got := classOf(t, st, "192.0.2.10"); got != "white/import" {
		t.Errorf("the daemon's store: 192.0.2.10 is %s", got)
	}
	if list := runMoat(t, cfgPath, "traps", "list"); !strings.Contains(list, "trap@example.org") {
		t.Errorf("the daemon's trap set lacks the imported trap:\n%s", list)
	}
	if _, err := moatIn(cfgPath, "", "import", "--from", "sendmail", file); err == nil || !strings.Contains(err.Error(), "spamdb or postgrey") {
		t.Errorf("--from sendmail: %v", err)
	}
}
