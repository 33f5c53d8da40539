package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gtube is the test pattern every SpamAssassin-compatible filter rejects.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// Rspamd is a real rspamd (Debian's) running as a milter, in its own
// directory, with nothing but its built-in checks: no Lua modules, no
// maps, no Redis, and a name server on a closed loopback port, so it never
// asks anything off the machine. GTUBE is a built-in check.
type Rspamd struct {
	Addr    string // milter address, 127.0.0.1:port
	Dir     string
	LogFile string
	cmd     *exec.Cmd
	done    chan struct{}
}

func requireRspamd(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("rspamd")
	if err != nil {
		for _, p := range []string{"/usr/bin/rspamd", "/usr/sbin/rspamd"} {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		t.Fatal("rspamd is not installed: apt-get install rspamd (test/run.sh does it)")
	}
	return path
}

// StartRspamd starts rspamd's proxy worker in milter mode with self-scan,
// logging every message's action and client IP to LogFile. It returns at
// once; WaitReady waits until it listens (loading takes several seconds).
func StartRspamd(t testing.TB) *Rspamd {
	t.Helper()
	bin := requireRspamd(t)
	dir := instanceDir(t, "rspamd")
	r := &Rspamd{Addr: FreeAddr(t, "127.0.0.1"), Dir: dir, LogFile: filepath.Join(dir, "rspamd.log"), done: make(chan struct{})}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`options {
  pidfile = "%[1]s/rspamd.pid";
  dbdir = "%[1]s/db";
  tempdir = "%[1]s";
  dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 0; }
}
logging { type = "file"; filename = "%[2]s"; level = "info"; }
worker "rspamd_proxy" {
  bind_socket = "%[3]s";
  milter = yes;
  timeout = 30s;
  count = 1;
  upstream "local" { default = yes; self_scan = yes; }
}
`, dir, r.LogFile, r.Addr)
	writeFile(t, filepath.Join(dir, "rspamd.conf"), conf)
	// -f: stay in the foreground, a child of the test binary; -i: run as
	// root, which the tests are.
	r.cmd = exec.Command(bin, "-f", "-i", "-c", filepath.Join(dir, "rspamd.conf"))
	r.cmd.Dir = dir
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = out, out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start rspamd: %v", err)
	}
	out.Close()
	dismiss := watchdog(t, r.cmd.Process.Pid, dir)
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(r.LogFile)
			t.Logf("rspamd log (tail):\n%s", tail(string(b), 30))
		}
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
		}
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		dismiss()
	})
	return r
}

// WaitReady waits until the milter listens.
func (r *Rspamd) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	if !waitListening(r.Addr, timeout, r.done) {
		b, _ := os.ReadFile(filepath.Join(r.Dir, "stdout.log"))
		l, _ := os.ReadFile(r.LogFile)
		t.Fatalf("rspamd does not listen on %s after %v\nstdout:\n%s\nlog:\n%s", r.Addr, timeout, tail(string(b), 20), tail(string(l), 20))
	}
}

// hostShow is "moat hosts show IP --json".
type hostShow struct {
	Class   string
	Reason  string
	Karma   *float64
	History []struct{ Class, Reason string }
}

func showHost(t *testing.T, m *Moat, ip string) hostShow {
	t.Helper()
	var h hostShow
	out := m.CLI(t, "hosts", "show", ip, "--json")
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("moat hosts show: %v in %q", err, out)
	}
	return h
}

func waitClass(t *testing.T, m *Moat, ip, class string, timeout time.Duration) hostShow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h := showHost(t, m, ip)
		if h.Class == class {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s (%s) after %v, want %s; history %+v", ip, h.Class, h.Reason, timeout, class, h.History)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sendMessage runs one SMTP transaction from ip through moat and returns
// the reply to RCPT and to the end of data (0 when DATA was not reached).
func sendMessage(t *testing.T, ip, addr, body string) (rcpt, final int, text string) {
	t.Helper()
	c := Dial(t, ip, addr)
	defer c.Close()
	if code, _ := c.Reply(t); code != 220 {
		t.Fatalf("banner %d", code)
	}
	if code, text := c.Cmd(t, "EHLO mail.sender.test"); code != 250 {
		t.Fatalf("EHLO: %d %s", code, text)
	}
	if code, text := c.Cmd(t, "MAIL FROM:<bob@sender.test>"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, text)
	}
	rcpt, text = c.Cmd(t, "RCPT TO:<"+alice+">")
	if rcpt != 250 {
		c.Cmd(t, "QUIT")
		return rcpt, 0, text
	}
	if code, text := c.Cmd(t, "DATA"); code != 354 {
		t.Fatalf("DATA: %d %s", code, text)
	}
	c.Write(t, "From: <bob@sender.test>\r\nTo: <"+alice+">\r\nSubject: test\r\nMessage-ID: <"+fmt.Sprint(time.Now().UnixNano())+"@sender.test>\r\n\r\n"+body+"\r\n.\r\n")
	final, text = c.Reply(t)
	c.Cmd(t, "QUIT")
	return rcpt, final, text
}

// TestRspamdFeedback: a white host that sends GTUBE through a real rspamd
// milter on the backend is grey after the first message and black after
// the second, moat learning of both from rspamd's log.
func TestRspamdFeedback(t *testing.T) {
	rs := StartRspamd(t) // loads while Postfix starts
	b := StartBackend(t, true, alice)
	// The milter is set before moat starts: moat reads the backend's EHLO
	// at start, and the smtpd that answers stays for the next connection
	// with the configuration it started with.
	rs.WaitReady(t, 45*time.Second)
	reload(t, b.Postfix, "smtpd_milters = inet:"+rs.Addr, "milter_default_action = tempfail", "milter_protocol = 6")
	m := StartMoat(t, moatConfig(`
[greylist]
greet_delay = "0s"
min_retry = "1s"
retry_window = "1h"

[reputation]
spf_pools = false
follow = [{ file = "{{rspamd_log}}", format = "rspamd" }]
`), "{{backend}}", b.Addr, "{{rspamd_log}}", rs.LogFile)
	const host = "127.0.0.41"

	// The host earns its whitelisting: a clean message, greylisted once.
	if rcpt, _, text := sendMessage(t, host, m.Addr, "hello"); rcpt != 451 {
		t.Fatalf("first attempt: RCPT %d %s, want 451", rcpt, text)
	}
	time.Sleep(minRetry)
	if rcpt, final, text := sendMessage(t, host, m.Addr, "hello"); rcpt != 250 || final != 250 {
		t.Fatalf("retry: RCPT %d, end of data %d %s", rcpt, final, text)
	}
	b.WaitMessages(t, alice, 1, 10*time.Second)
	waitClass(t, m, host, "white", 5*time.Second)
	// rspamd's "no action" for it is ham; wait for it so the order is fixed.
	waitLog(t, m, `"verdict":"ham"`, 10*time.Second)

	// First GTUBE: spliced straight to the backend, rejected by rspamd.
	if _, final, text := sendMessage(t, host, m.Addr, gtube); final < 500 {
		t.Fatalf("GTUBE from a white host: end of data %d %s, want a 5xx from the milter", final, text)
	}
	h := waitClass(t, m, host, "grey", 15*time.Second)
	if !strings.Contains(h.Reason, "spam from rspamd") {
		t.Errorf("grey for %q, want the rspamd verdict", h.Reason)
	}

	// Second GTUBE: greylisted again, but its triplet has passed, so it
	// is handed to the backend at once, and rejected again.
	if rcpt, final, text := sendMessage(t, host, m.Addr, gtube); rcpt != 250 || final < 500 {
		t.Fatalf("second GTUBE: RCPT %d, end of data %d %s", rcpt, final, text)
	}
	h = waitClass(t, m, host, "black", 15*time.Second)
	var classes []string
	for _, e := range h.History {
		if e.Class != "" {
			classes = append(classes, e.Class)
		}
	}
	if strings.Join(classes, ",") != "white,grey,black" {
		t.Errorf("history %+v, want white, grey, black", h.History)
	}
	// The text form names every step.
	out := m.CLI(t, "hosts", "show", host)
	for _, want := range []string{host + " is black", "greylist", "spam from rspamd", "karma"} {
		if !strings.Contains(out, want) {
			t.Errorf("moat hosts show lacks %q:\n%s", want, out)
		}
	}
	// A black host meets the tarpit, not the backend.
	before := b.CountLog(`connect from`)
	c := Dial(t, host, m.Addr)
	c.Close()
	waitLog(t, m, `"client":"`+host+`","class":"black"`, 10*time.Second)
	if after := b.CountLog(`connect from`); after != before {
		t.Errorf("backend saw %d new connections from a black host", after-before)
	}
}

// waitLog polls moat's log for a line containing s.
func waitLog(t *testing.T, m *Moat, s string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !strings.Contains(m.Log(), s) {
		if ctx.Err() != nil {
			t.Fatalf("moat's log has no %q after %v:\n%s", s, timeout, tail(m.Log(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
