package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/daemon"
	"moat/internal/store"
)

// startDaemon runs a daemon of the configuration at path in this process
// until the test ends.
func startDaemon(t *testing.T, path string) *daemon.Daemon {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	d.ConfigPath = path
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		d.Close()
	})
	for {
		if c, err := net.Dial("unix", cfg.AdminSocket()); err == nil {
			c.Close()
			return d
		}
		select {
		case err := <-done:
			t.Fatalf("daemon stopped at start: %v", err)
		default:
		}
	}
}

// loopbackConfig is a configuration that listens and talks only on
// loopback, with DNS on a closed port.
func loopbackConfig(t *testing.T) string {
	return fmt.Sprintf("listen = %q\nbackend = %q\nbackend_proxy_protocol = \"none\"\n[reputation]\ndns_servers = [\"127.0.0.1:9\"]\n",
		freeAddr(t), freeAddr(t))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// "moat reload" says what the daemon applied and what needs a restart;
// a broken file is refused with its problems and the command fails; with
// no daemon there is nothing to reload.
func TestReloadCommand(t *testing.T) {
	dir := shortDir(t)
	base := loopbackConfig(t)
	cfg := writeConfig(t, dir, base)
	d := startDaemon(t, cfg)

	edit := func(text string) {
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := fmt.Sprintf("data_dir = %q\n", dir+"/data")
	edit(dataDir + "whitelist = [\"192.0.2.0/24\"]\nhostname = \"other.example\"\n" + base)
	out := runMoat(t, cfg, "reload")
	want := "reloaded " + cfg + ": applied whitelist\nchanged, but applied only after a restart: hostname\n"
	if out != want {
		t.Errorf("moat reload printed %q, want %q", out, want)
	}
	edit(dataDir + "whitelist = [\"192.0.2.300\"]\n[greylist]\nipv4_prefix = 99\n" + base)
	_, err := moat(t, cfg, "reload")
	if err == nil || !strings.HasPrefix(err.Error(), "reload refused, the running configuration stays:\n") ||
		!strings.Contains(err.Error(), "whitelist[0]") {
		t.Errorf("moat reload of a broken file: %v, want a refusal naming whitelist[0]", err)
	}
	if v, _ := d.Engine.Classify(netip.MustParseAddr("192.0.2.5")); v.Class != store.White {
		t.Errorf("after a refused reload 192.0.2.5 is %v: the whitelist of the last good reload must stay", v.Class)
	}

	other := writeConfig(t, shortDir(t), "")
	if _, err := moat(t, other, "reload"); err == nil || !strings.Contains(err.Error(), "no moat daemon answers on") {
		t.Errorf("moat reload with no daemon: %v, want it to say no daemon answers", err)
	}
}
