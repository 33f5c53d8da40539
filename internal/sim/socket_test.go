package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/daemon"
	"moat/internal/server/servertest"
	"moat/internal/store/bolt"
)

// backendTakes is what servertest.Backend takes: every recipient but the
// unknown ones.
func backendTakes(rcpt string) bool { return !strings.HasPrefix(rcpt, "unknown") }

// between is the address inside a command's angle brackets.
func between(line string) string {
	_, a, _ := strings.Cut(line, "<")
	a, _, _ = strings.Cut(a, ">")
	return strings.ToLower(a)
}

// logLines collects moat's session log lines.
type logLines struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []map[string]any
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadBytes('\n')
		if err != nil {
			l.buf.Write(line)
			break
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == "session" {
			l.lines = append(l.lines, m)
		}
	}
	return len(p), nil
}

// after returns the session lines from the n-th on.
func (l *logLines) after(n int) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.lines[n:]...)
}

// smtpClient plays an attempt on a real socket from its client address, as
// a sender does: it talks early or waits for the whole banner, then EHLO,
// MAIL, each RCPT, DATA for the recipients taken, QUIT. It returns the
// recipients the server took the message for.
func smtpClient(t *testing.T, moatAddr string, a Attempt) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP(a.Client.AsSlice())}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", moatAddr)
	if err != nil {
		t.Fatalf("dial from %s: %v", a.Client, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	reply := func() string {
		t.Helper()
		var last string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: reading a reply: %v", a.Client, err)
			}
			if len(l) < 4 || l[3] != '-' {
				last = l
				break
			}
		}
		return last
	}
	say := func(line string) string {
		t.Helper()
		fmt.Fprintf(c, "%s\r\n", line)
		return reply()
	}
	if a.EarlyTalk {
		fmt.Fprintf(c, "EHLO bot.test\r\n")
		reply() // the banner
		reply() // the EHLO
	} else {
		reply()
		say("EHLO client.test")
	}
	if len(a.Rcpts) > 0 {
		say("MAIL FROM:<" + a.Sender + ">")
		taken := 0
		for _, rc := range a.Rcpts {
			if strings.HasPrefix(say("RCPT TO:<"+rc+">"), "250") {
				taken++
			}
		}
		if taken > 0 && strings.HasPrefix(say("DATA"), "354") {
			fmt.Fprintf(c, "Subject: test\r\n\r\nhello\r\n")
			say(".")
		}
	}
	say("QUIT")
}

// TestSimulatorMatchesSockets replays one short trace twice: through a
// running moat on loopback (real sockets, short timers, the recording
// backend of servertest behind a PROXY header), and through the simulator on a fake clock set to the times
// the sessions really began. Every session gets the same class and
// verdict both ways, and the simulator delivers exactly what the backend
// received.
func TestSimulatorMatchesSockets(t *testing.T) {
	be := servertest.StartBackend(t)
	dir, err := os.MkdirTemp("", "moatsim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`listen = %q
hostname = "mx.moat.test"
backend = %q
data_dir = %q
[greylist]
greet_delay = "300ms"
min_retry = "4s"
retry_window = "1h"
[tarpit]
stutter = "1ms"
[traps]
addresses = ["trap@moat.test"]
[reputation]
dns_servers = ["127.0.0.1:9"]
`, listen, be.Addr(), dir)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	d, err := daemon.New(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", listen); err == nil {
			c.Close()
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("moat does not listen: %v", err)
		}
	}
	// The probe connection above is a session too: wait for its line.
	waitLines(t, logs, 0, 1)

	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	a, b, c, e := ip("127.0.0.11"), ip("127.0.0.12"), ip("127.0.0.13"), ip("127.0.0.14")
	trace := []struct {
		wait time.Duration // before the session, after the previous one ended
		Attempt
	}{
		{0, Attempt{Client: a, Sender: "alice@sender.test", Rcpts: []string{"user1@moat.test", "user2@moat.test"}}},
		{0, Attempt{Client: b, EarlyTalk: true, Sender: "x@bot.test", Rcpts: []string{"user1@moat.test"}}},
		{0, Attempt{Client: c, Sender: "y@bot.test", Rcpts: []string{"user3@moat.test", "trap@moat.test", "user4@moat.test"}}},
		{0, Attempt{Client: b, Sender: "x@bot.test", Rcpts: []string{"user1@moat.test"}}},
		{0, Attempt{Client: a, Sender: "alice@sender.test", Rcpts: []string{"user1@moat.test", "user2@moat.test"}}},
		{0, Attempt{Client: e, Sender: "eve@other.test", Rcpts: []string{"unknown@moat.test", "user5@moat.test"}}},
		{5 * time.Second, Attempt{Client: a, Sender: "alice@sender.test", Rcpts: []string{"user1@moat.test", "user2@moat.test"}}},
		{0, Attempt{Client: e, Sender: "eve@other.test", Rcpts: []string{"unknown@moat.test", "user5@moat.test"}}},
		{0, Attempt{Client: a, Sender: "alice@sender.test", Rcpts: []string{"user7@moat.test"}}},
		{0, Attempt{Client: c, Sender: "y@bot.test", Rcpts: []string{"user3@moat.test"}}},
		{0, Attempt{Client: e, Sender: "eve@other.test", Rcpts: []string{"user6@moat.test"}}},
	}
	type seen struct{ class, verdict string }
	var live []seen
	var began []time.Time
	n := 1
	for _, s := range trace {
		time.Sleep(s.wait)
		began = append(began, time.Now())
		smtpClient(t, listen, s.Attempt)
		l := waitLines(t, logs, n, 1)
		live = append(live, seen{fmt.Sprint(l[0]["class"]), fmt.Sprint(l[0]["verdict"])})
		// A session moved to the tarpit logs again when it leaves it.
		if l[0]["next"] == "tarpit" {
			waitLines(t, logs, n, 2)
			n++
		}
		n++
	}

	clk := clock.NewFake(began[0])
	st := bolt.Memory(bolt.Options{Clock: clk})
	defer st.Close()
	eng, err := daemon.NewSimEngine(cfg, st, clk, &spfResolver{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Player{Eng: eng, Clock: clk, GreetDelay: cfg.Greylist.GreetDelay.Duration, MaxRcpts: cfg.Limits.MaxRcpts,
		Tarpit: daemon.TarpitConfig(cfg, daemon.NewWords(cfg, false)), Mailbox: backendTakes}
	var delivered []string
	for i, s := range trace {
		clk.Set(began[i])
		o := p.Play(s.Attempt)
		if got := (seen{o.Class.String(), o.Verdict}); got != live[i] {
			t.Errorf("session %d from %s: simulator %v, moat on a socket %v", i, s.Client, got, live[i])
		}
		if len(o.Accepted) > 0 {
			delivered = append(delivered, s.Sender+">"+strings.Join(o.Accepted, ","))
		}
	}
	var received []string
	for _, m := range be.Messages() {
		var rcpts []string
		for _, r := range m.Rcpts {
			rcpts = append(rcpts, between(r))
		}
		received = append(received, between(m.From)+">"+strings.Join(rcpts, ","))
	}
	if got, want := strings.Join(received, " "), strings.Join(delivered, " "); got != want {
		t.Errorf("the backend received %q, the simulator delivered %q", got, want)
	}
	if len(delivered) != 4 {
		t.Errorf("delivered %q: want alice's and eve's passes, then each of them spliced", delivered)
	}
}

// waitLines waits until at least want session lines from the from-th on
// are logged, and returns them.
func waitLines(t *testing.T, logs *logLines, from, want int) []map[string]any {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if l := logs.after(from); len(l) >= want {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session line %d in the log", from+want)
		}
	}
}
