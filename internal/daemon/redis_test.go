package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/admin"
	"moat/internal/config"
	"moat/internal/server/servertest"
	"moat/internal/store/redis/redistest"
)

// With Redis not up yet, moat starts and serves what needs no store (its
// configured lists), answers unknown hosts 4xx (never 5xx), says so in
// "moat status", and logs once when Redis answers, which a real
// redis-server started after moat then does.
func TestRedisDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop(t)
	dir := shortDir(t)
	be := servertest.StartBackend(t)
	listen := freeAddr(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`data_dir = %q
listen = %q
hostname = "mx.example.org"
backend = %q
store = %q
whitelist = ["127.0.0.2"]
[traps]
addresses = ["trap@example.org"]
[greylist]
greet_delay = "1ms"
[redis]
timeout = "200ms"
[reputation]
dns_servers = ["127.0.0.1:9"]
`, dir, listen, be.Addr(), srv.URL(0))))
	if err != nil {
		t.Fatal(err)
	}
	var logBuf servertest.LogBuffer
	d, err := New(cfg, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatalf("New with Redis down: %v; want moat to start", err)
	}
	defer d.Close()
	d.ConfigPath = filepath.Join(dir, "none.toml")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitListen(t, listen)

	white, whiteR := dialFrom(t, "127.0.0.2", listen)
	if r := say(t, white, whiteR, ""); !strings.Contains(r, "backend.test") {
		t.Errorf("a whitelisted host with Redis down: banner %q, want the backend's (spliced)", r)
	}
	white.Close()
	grey, greyR := dialFrom(t, "127.0.0.20", listen)
	say(t, grey, greyR, "")
	say(t, grey, greyR, "EHLO unknown.example")
	say(t, grey, greyR, "MAIL FROM:<a@sender.example>")
	if r := say(t, grey, greyR, "RCPT TO:<u@example.org>"); !strings.HasPrefix(r, "4") {
		t.Errorf("an unknown host with Redis down: RCPT got %q, want 4xx", r)
	}
	grey.Close()

	client := admin.NewClient(cfg.AdminSocket())
	var st admin.Status
	if err := client.Do("GET", "/v1/status", nil, &st); err != nil || st.StoreDown == nil {
		t.Errorf("status with Redis down: %+v, %v; want the store shown down", st, err)
	}

	srv.Restart(t)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st = admin.Status{}
		if err := client.Do("GET", "/v1/status", nil, &st); err == nil && st.StoreDown == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis answers again but status still says %+v; log:\n%s", st, logBuf.String())
		}
	}
	if n := strings.Count(logBuf.String(), "redis: reachable again"); n != 1 {
		t.Errorf("%d lines say Redis is back, want 1:\n%s", n, logBuf.String())
	}
	if n := strings.Count(logBuf.String(), "redis: unreachable"); n != 1 {
		t.Errorf("%d lines say Redis is down, want 1:\n%s", n, logBuf.String())
	}
	if err := client.Do("POST", "/v1/hosts", map[string]string{"ip": "192.0.2.9", "class": "black"}, nil); err != nil {
		t.Errorf("an operator's change once Redis is back: %v", err)
	}
}
