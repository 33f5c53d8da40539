package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/admin"
	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/daemon"
	"moat/internal/store"
	"moat/internal/store/bolt"
)

// serveAdmin serves the admin API on cfg's socket, as a running daemon
// does (the status says it runs), over the store wrap makes of a fresh
// bolt store.
func serveAdmin(t *testing.T, cfgPath string, wrap func(store.Store) store.Store) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	eng, err := daemon.NewEngine(cfg, wrap(b), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := admin.Listen(cfg.AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		svc := &admin.Service{Eng: eng, Live: func() admin.Live { return admin.Live{} }}
		svc.Serve(ctx, ln)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// hostsDown is a store whose host table cannot be read.
type hostsDown struct {
	store.Store
	err error
}

func (s hostsDown) Hosts(func(store.Host) bool) error { return s.err }
func (s hostsDown) Lookup(netip.Addr) (store.Host, bool, error) {
	return store.Host{}, false, s.err
}

// Whatever the API answers, 400, 404, 500 or 503, and whether a daemon
// runs or not, the command fails with the API's own message.
func TestCommandsSayTheAPIsMessage(t *testing.T) {
	refusals := []struct {
		args []string
		want string
	}{
		{[]string{"hosts", "black", "0.0.0.0/0"}, `0.0.0.0/0 covers more than a /16: making it black needs --force ("force": true in the API) if you mean it`},
		{[]string{"hosts", "forget", "198.51.100.99"}, "198.51.100.99: moat remembers nothing of it"},
		{[]string{"hosts", "show", "198.51.100.99"}, "198.51.100.99: moat remembers nothing of it"},
		{[]string{"traps", "del", "nobody@example.org"}, "traps: nobody@example.org is not a trap (see 'moat traps list')"},
		{[]string{"traps", "add", "nobody"}, `traps: "nobody" is not an address (want local@domain)`},
	}
	check := func(t *testing.T, cfg string, args []string, want string) {
		t.Helper()
		if _, err := moat(t, cfg, args...); err == nil || err.Error() != want {
			t.Errorf("moat %v: %v, want %q", args, err, want)
		}
	}
	t.Run("no daemon", func(t *testing.T) {
		cfg := writeConfig(t, t.TempDir(), "")
		for _, r := range refusals {
			check(t, cfg, r.args, r.want)
		}
	})
	t.Run("daemon", func(t *testing.T) {
		cfg := writeConfig(t, shortDir(t), "")
		serveAdmin(t, cfg, func(st store.Store) store.Store { return st })
		if out := runMoat(t, cfg, "status"); !strings.HasPrefix(out, "moat: running\n") {
			t.Fatalf("moat status with the daemon serving said %q, want it running", out)
		}
		for _, r := range refusals {
			check(t, cfg, r.args, r.want)
		}
	})
	for _, cause := range []error{
		fmt.Errorf("%w: redis 192.0.2.1:6379 is unreachable", store.ErrUnavailable), // 503
		errors.New("disk on fire"), // 500
	} {
		t.Run(cause.Error(), func(t *testing.T) {
			cfg := writeConfig(t, shortDir(t), "")
			serveAdmin(t, cfg, func(st store.Store) store.Store { return hostsDown{st, cause} })
			check(t, cfg, []string{"hosts", "list"}, cause.Error())
			check(t, cfg, []string{"hosts", "show", "192.0.2.1"}, cause.Error())
			check(t, cfg, []string{"status"}, cause.Error())
		})
	}
}

// With no daemon and no store where the configuration points (the wrong
// -c, or a relative data_dir from another directory), every command that
// would open the store refuses, names the path, and makes nothing.
func TestCommandsRefuseWithoutStore(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfigOnly(t, dir, "")
	db := filepath.Join(dir, "data", "moat.db")
	backup := filepath.Join(dir, "backup.jsonl")
	if err := os.WriteFile(backup, []byte(`{"type":"moat-export","version":1}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status"}, {"hosts", "list"}, {"hosts", "black", "192.0.2.1"}, {"hosts", "white", "192.0.2.2"},
		{"traps", "add", "t@example.org"}, {"traps", "list"}, {"export", filepath.Join(dir, "out.jsonl")}, {"import", backup},
	} {
		_, err := moat(t, cfg, args...)
		if err == nil || !strings.HasPrefix(strings.TrimPrefix(err.Error(), args[0]+": "), "no moat store at "+db+": is -c right?") {
			t.Errorf("moat %v with no store: %v, want a refusal naming %s", args, err, db)
		}
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("a command made %s (%v)", db, err)
	}
}
