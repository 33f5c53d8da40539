package daemon

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moat/internal/admin"
	"moat/internal/buildinfo"
	"moat/internal/config"
	"moat/internal/server/servertest"
	"moat/internal/store"
	"moat/internal/tlstest"
)

// dialFrom connects to addr from the loopback address client, so that a
// test plays several hosts.
func dialFrom(t *testing.T, client, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return c, bufio.NewReader(c)
}

// say sends a command and returns the last line of the reply.
func say(t *testing.T, c net.Conn, br *bufio.Reader, cmd string) string {
	t.Helper()
	if cmd != "" {
		fmt.Fprintf(c, "%s\r\n", cmd)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", cmd, err)
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

// reloadConfig is the configuration of TestReloadKeepsEverySession, with
// the parts a reload changes.
func reloadConfig(dir, listen, backend, top, tables string) string {
	return fmt.Sprintf(`%sdata_dir = %q
listen = %q
hostname = "mx.example.org"
backend = %q
whitelist = ["127.0.0.2"]
blacklist = ["127.0.0.3"]
[greylist]
greet_delay = "1ms"
min_retry = "50ms"
[tarpit]
stutter = "20ms"
[reputation]
dns_servers = ["127.0.0.1:9"]
%s`, top, dir, listen, backend, tables)
}

// Reloads while sessions of every kind are open close none of them, apply
// the new lists, timings, limits, traps, certificate and level to what
// comes next, refuse a broken file whole, and name the keys that need a
// restart. Run under -race: sessions start and reloads happen at once.
func TestReloadKeepsEverySession(t *testing.T) {
	dir := shortDir(t)
	be := servertest.StartBackend(t)
	listen := freeAddr(t)
	path := filepath.Join(dir, "moat.toml")
	write := func(text string) {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadConfig(dir, listen, be.Addr(), "", ""))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf servertest.LogBuffer
	logs := slog.New(slog.NewTextHandler(&logBuf, nil))
	lv := new(slog.LevelVar)
	d, err := New(cfg, logs)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.ConfigPath, d.Level = path, lv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitListen(t, listen)
	bi := buildinfo.Read()
	want := fmt.Sprintf(`msg="moat started" version=%s revision=%s build_date=%s config=%s`, bi.Version, bi.Revision, bi.Date, path)
	waitLog(t, &logBuf, "the start-up line", func() bool { return strings.Contains(logBuf.String(), want) })

	// A grey session, greeted.
	grey, greyR := dialFrom(t, "127.0.0.10", listen)
	say(t, grey, greyR, "")
	say(t, grey, greyR, "EHLO grey.example")
	// A grey session handed off to the backend: its retry passed.
	pass, passR := dialFrom(t, "127.0.0.11", listen)
	say(t, pass, passR, "")
	say(t, pass, passR, "EHLO pass.example")
	say(t, pass, passR, "MAIL FROM:<a@sender.example>")
	if r := say(t, pass, passR, "RCPT TO:<u@example.org>"); !strings.HasPrefix(r, "451") {
		t.Fatalf("first RCPT: %q, want 451 (greylisted)", r)
	}
	time.Sleep(60 * time.Millisecond) // min_retry
	if r := say(t, pass, passR, "RCPT TO:<u@example.org>"); !strings.HasPrefix(r, "250") {
		t.Fatalf("RCPT after min_retry: %q, want the backend's 250", r)
	}
	// The backend's 250 taught moat that example.org is one of its domains
	// (the relay check's, in domains.go).
	if !d.domains.is("example.org") {
		t.Error("the backend took a recipient at example.org, and moat does not count it among the backend's domains")
	}
	// A white host, spliced to the backend.
	white, whiteR := dialFrom(t, "127.0.0.2", listen)
	if r := say(t, white, whiteR, ""); !strings.Contains(r, "backend.test") {
		t.Fatalf("white host's banner %q, want the backend's", r)
	}
	// A black host, held in the tarpit.
	black, blackR := dialFrom(t, "127.0.0.3", listen)
	if _, err := blackR.ReadByte(); err != nil {
		t.Fatalf("tarpit: %v", err)
	}

	// Sessions start while reloads happen, through SIGHUP and the API.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := churn(fmt.Sprintf("127.0.1.%d", i+1), listen); err != nil {
					t.Errorf("a session during reloads: %v", err)
					return
				}
			}
		}()
	}
	cert, key := tlstest.WriteCert(t, dir, "mx.example.org", time.Now().Add(90*24*time.Hour))
	client := admin.NewClient(cfg.AdminSocket())
	for i := range 6 {
		write(reloadConfig(dir, listen, be.Addr(), fmt.Sprintf("black_ttl = \"%dh\"\n", i+2), fmt.Sprintf(`[traps]
addresses = ["trap%d@example.org"]
[limits]
max_rcpts = %d
[tls]
cert = %q
key = %q
[log]
level = "debug"
`, i, 50+i, cert, key)))
		if i%2 == 0 {
			syscall.Kill(os.Getpid(), syscall.SIGHUP)
			waitLog(t, &logBuf, fmt.Sprintf("reload of trap%d@ after SIGHUP", i), func() bool { return d.Engine.Traps().Is(fmt.Sprintf("trap%d@example.org", i)) })
			continue
		}
		var res admin.Reloaded
		if err := client.Do("POST", "/v1/reload", nil, &res); err != nil {
			t.Fatalf("reload %d through the API: %v", i, err)
		}
		if !d.Engine.Traps().Is(fmt.Sprintf("trap%d@example.org", i)) {
			t.Errorf("reload %d: the new trap is not a trap", i)
		}
	}
	close(stop)
	wg.Wait()

	// Every session opened before the reloads goes on.
	if r := say(t, grey, greyR, "NOOP"); !strings.HasPrefix(r, "250") {
		t.Errorf("grey session after the reloads: NOOP got %q", r)
	}
	if r := say(t, pass, passR, "DATA"); !strings.HasPrefix(r, "354") {
		t.Fatalf("handed-off session after the reloads: DATA got %q", r)
	}
	if r := say(t, pass, passR, "Subject: x\r\n\r\nbody\r\n."); !strings.HasPrefix(r, "250") {
		t.Errorf("handed-off session after the reloads: end of data got %q, want the backend's 250", r)
	}
	if r := say(t, white, whiteR, "HELO white.example"); r != "250 2.0.0 Ok" {
		t.Errorf("spliced session after the reloads: HELO got %q, want the backend's reply", r)
	}
	if _, err := blackR.ReadByte(); err != nil {
		t.Errorf("tarpitted session after the reloads: %v", err)
	}
	// What comes next has the new settings.
	if lv.Level() != slog.LevelDebug {
		t.Errorf("log level after reload: %v, want debug", lv.Level())
	}
	c, br := dialFrom(t, "127.0.0.12", listen)
	say(t, c, br, "")
	fmt.Fprint(c, "EHLO new.example\r\n")
	var ehlo []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		ehlo = append(ehlo, strings.TrimSpace(l))
		if l[3] == ' ' {
			break
		}
	}
	if !strings.Contains(strings.Join(ehlo, " "), "STARTTLS") {
		t.Errorf("a session after a reload that set tls.cert: EHLO %q, want STARTTLS offered", ehlo)
	}

	// Run waits for open sessions when it stops: end them.
	for _, c := range []net.Conn{grey, pass, white, black, c} {
		c.Close()
	}

	// A broken file is refused whole: nothing of it applies.
	write(reloadConfig(dir, listen, be.Addr(), "black_ttl = \"1h\"\n", "[limits]\nmax_rcpts = \"many\"\n"))
	_, err = d.Reload()
	if err == nil || !strings.Contains(err.Error(), "limits.max_rcpts") {
		t.Fatalf("reload of a broken file: %v, want an error naming limits.max_rcpts", err)
	}
	if v, _ := d.Engine.Classify(netip.MustParseAddr("127.0.0.2")); v.Class != store.White {
		t.Errorf("after a refused reload, 127.0.0.2 is %v: the running whitelist changed", v.Class)
	}
	if !strings.Contains(logBuf.String(), "reload: refused") {
		t.Errorf("the refused reload was not logged:\n%s", logBuf.String())
	}
	// A key that needs a restart is named, and the rest applies.
	write(strings.Replace(reloadConfig(dir, freeAddr(t), be.Addr(), "", ""), `whitelist = ["127.0.0.2"]`, `whitelist = ["127.0.0.2", "127.0.0.60"]`, 1))
	res, err := d.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if !contains(res.Restart, "listen") || !contains(res.Applied, "whitelist") || contains(res.Applied, "listen") {
		t.Errorf("Reloaded = %+v, want listen to need a restart and whitelist applied", res)
	}
	if v, _ := d.Engine.Classify(netip.MustParseAddr("127.0.0.60")); v.Class != store.White {
		t.Errorf("a host added to the whitelist by a reload is %v", v.Class)
	}
}

// churn runs a short grey session from client: banner, EHLO, QUIT.
func churn(client, addr string) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for _, cmd := range []string{"", "EHLO churn.example", "QUIT"} {
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return fmt.Errorf("after %q: %w", cmd, err)
			}
			if line[0] != '2' {
				return fmt.Errorf("after %q: %q", cmd, line)
			}
			if len(line) < 4 || line[3] != '-' {
				break
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// waitLog waits until ok holds: the daemon logs and reloads on its own
// goroutines.
func waitLog(t *testing.T, logs *servertest.LogBuffer, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10s; log:\n%s", what, logs.String())
		}
	}
}

// waitListen waits until moat accepts connections on addr.
func waitListen(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat does not listen on %s: %v", addr, err)
		}
	}
}
