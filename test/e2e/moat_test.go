package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// These tests put moat between a Postfix sender and a Postfix backend and
// check what each side sees: the sender's log (deferrals), the backend's
// log (which client addresses arrive) and Maildirs (what was delivered),
// and moat's own CLI and log.

const alice = "alice@example.test"

// moatConfig is the config every test starts from; extra is appended.
func moatConfig(extra string) string {
	return `listen = "{{listen}}"
hostname = "mx.example.test"
backend = "{{backend}}"
backend_proxy_protocol = "v2"
data_dir = "{{data_dir}}"
` + extra
}

func TestGreylistRetryDelivers(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(`
[greylist]
greet_delay = "200ms"
min_retry = "2s"
retry_window = "1h"
`), "{{backend}}", b.Addr)
	s := StartSender(t, m.Addr, "127.0.0.20")

	s.Send(t, "bob@sender.test", alice, "greylisted first", "hello alice")

	// First sight of the triplet: a temporary refusal, and the host is
	// not white. No retry can pass before min_retry (2s) has gone by,
	// which leaves time to look.
	s.WaitLog(t, `status=deferred .*451 4\.7\.1`, 20*time.Second)
	if class, ok := m.Hosts(t)["127.0.0.20"]; ok && class != "grey" {
		t.Errorf("after the first attempt 127.0.0.20 is %s, want grey or unlisted", class)
	}
	if n := b.AllMessages(); n != 0 {
		t.Fatalf("backend has %d messages after a greylisted attempt, want none", n)
	}

	// A good retry is handed to the backend and delivered, once.
	msgs := b.WaitMessages(t, alice, 1, 40*time.Second)
	s.WaitQueueEmpty(t, 10*time.Second)
	if msgs = b.Messages(alice); len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want exactly 1", len(msgs))
	}
	if !strings.Contains(msgs[0], "Subject: greylisted first") {
		t.Errorf("wrong message delivered:\n%s", msgs[0])
	}
	// The backend learnt the real client from the PROXY header.
	addrs := b.ClientAddrs()
	if len(addrs) == 0 {
		t.Fatal("backend logged no connection")
	}
	for _, a := range addrs {
		if a != "127.0.0.20" {
			t.Errorf("backend saw client %s, want only 127.0.0.20 (the sender), never moat's own address", a)
		}
	}
	if class := m.Hosts(t, "--class", "white")["127.0.0.20"]; class != "white" {
		t.Errorf("after a passed retry 127.0.0.20 is %q in hosts list --class white, want white", class)
	}

	// Now white: the next message is spliced straight through, with no
	// new deferral.
	deferrals := s.CountLog(`451 4\.7\.1`)
	s.Send(t, "bob@sender.test", alice, "white now", "hello again")
	msgs = b.WaitMessages(t, alice, 2, 20*time.Second)
	s.WaitQueueEmpty(t, 10*time.Second)
	if !strings.Contains(strings.Join(msgs, "\n"), "Subject: white now") {
		t.Errorf("second message not among alice's:\n%s", strings.Join(msgs, "\n---\n"))
	}
	if n := s.CountLog(`451 4\.7\.1`); n != deferrals {
		t.Errorf("sender was deferred %d more times for a white host's message", n-deferrals)
	}
	waitRecord(t, m, "a session of 127.0.0.20 with class white", func(rec map[string]any) bool {
		return rec["class"] == "white" && mentions(rec, "127.0.0.20")
	})
}

func TestTarpitBlackClient(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(`blacklist = ["127.0.0.66/32"]

[tarpit]
stutter = "50ms"
`), "{{backend}}", b.Addr)

	c := Dial(t, "127.0.0.66", m.Addr)
	defer c.Close()
	code, banner := c.Reply(t)
	if code != 220 {
		t.Fatalf("banner %q, want 220", banner)
	}
	// One byte per stutter: a reply arrives in about as many reads as it
	// has bytes. A reader kept from its socket for a while can get a few
	// bytes at once, hence the margin.
	if n := c.Reads(); n < 10 {
		t.Errorf("banner %q came in %d reads, want at least 10 (stuttered)", banner, n)
	}
	for _, step := range []struct {
		line string
		want int
	}{
		{"EHLO spammer.test", 250},
		{"MAIL FROM:<spammer@spam.test>", 250},
		{"RCPT TO:<victim@foreign.example>", 250}, // an open relay, it seems
		{"DATA", 354},
		// A config blacklist entry proves nothing: the message is
		// deferred, so a real MTA listed by mistake would keep it.
		{"Subject: buy now\r\n\r\ncheap stuff\r\n.", 451},
	} {
		code, text := c.Cmd(t, step.line)
		if code != step.want {
			t.Fatalf("after %q: got %q, want %d", step.line, text, step.want)
		}
		if n := c.Reads(); n < 2 {
			t.Errorf("reply %q to %q came in %d read, want it stuttered", text, step.line, n)
		}
	}
	c.Close()

	// The tarpit never dials out: nothing reached the backend.
	waitRecord(t, m, "a session of 127.0.0.66 with class black", func(rec map[string]any) bool {
		return rec["class"] == "black" && mentions(rec, "127.0.0.66")
	})
	if addrs := b.ClientAddrs(); len(addrs) != 0 {
		t.Errorf("backend saw connections from %q, want none", addrs)
	}
	if n := b.CountLog(`client=|status=`); n != 0 {
		t.Errorf("backend logged %d message lines, want none:\n%s", n, b.Log())
	}
	if n := b.AllMessages(); n != 0 {
		t.Errorf("backend delivered %d messages, want none", n)
	}
}

func TestRestartKeepsHosts(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(`
[tarpit]
stutter = "50ms"
`), "{{backend}}", b.Addr)

	m.CLI(t, "hosts", "white", "127.0.0.30")
	m.CLI(t, "hosts", "black", "127.0.0.31")
	m.Restart(t)
	hosts := m.Hosts(t)
	for ip, want := range map[string]string{"127.0.0.30": "white", "127.0.0.31": "black"} {
		if hosts[ip] != want {
			t.Errorf("after restart %s is %q, want %s (hosts: %v)", ip, hosts[ip], want, hosts)
		}
	}

	// The black host meets the tarpit.
	c := Dial(t, "127.0.0.31", m.Addr)
	code, banner := c.Reply(t)
	if code != 220 {
		t.Errorf("black host: banner %q, want 220", banner)
	}
	if n := c.Reads(); n < 10 {
		t.Errorf("black host: banner %q came in %d reads, want at least 10 (stuttered)", banner, n)
	}
	c.Close()

	// The white host is spliced to the backend: it gets the backend's
	// banner, and the backend sees its address.
	c = Dial(t, "127.0.0.30", m.Addr)
	code, banner = c.Reply(t)
	if code != 220 || !strings.Contains(banner, "backend.example.test") {
		t.Errorf("white host: banner %q, want the backend's 220", banner)
	}
	expect(t, c, "EHLO white.test", 250)
	expect(t, c, "QUIT", 221)
	c.Close()
	b.WaitLog(t, `connect from [^ ]*\[127\.0\.0\.30\]`, 10*time.Second)
	if addrs := b.ClientAddrs(); fmt.Sprint(addrs) != "[127.0.0.30]" {
		t.Errorf("backend saw clients %q, want only 127.0.0.30", addrs)
	}

	// An operator's command is durable once acknowledged: it survives
	// even a moat that is killed rather than stopped.
	m.CLI(t, "hosts", "black", "127.0.0.32")
	m.Kill(t)
	m.Start(t)
	if class := m.Hosts(t)["127.0.0.32"]; class != "black" {
		t.Errorf("after kill and start 127.0.0.32 is %q, want black", class)
	}
}

// waitRecord polls moat's JSON log until a record satisfies match.
func waitRecord(t *testing.T, m *Moat, what string, match func(map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, rec := range m.LogRecords() {
			if match(rec) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat logged no %s within 10s; log tail:\n%s", what, tail(m.Log(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mentions reports whether any string value of rec names addr, alone or
// as host:port.
func mentions(rec map[string]any, addr string) bool {
	for _, v := range rec {
		if s, ok := v.(string); ok && (s == addr || strings.HasPrefix(s, addr+":")) {
			return true
		}
	}
	return false
}
