package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"moat/internal/bypass"
)

// The kernel bypass against a real Postfix: moat runs with
// bypass.mode = "nftables" and a table of this test's own; clients are
// local (127.0.0.x), so the rule that redirects them is the one on the
// output hook, in this machine's own network namespace.

// needNftables skips a test on a kernel without nf_tables, saying so.
func needNftables(t *testing.T) {
	t.Helper()
	c, err := nftables.New()
	if err == nil {
		_, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
	}
	if err != nil {
		t.Skipf("the kernel bypass needs nf_tables in the kernel: %v", err)
	}
}

// banner connects from src to moat's port and returns the first line of
// whichever server greets it: Postfix (backend.example.test) when the
// kernel sent the client past moat, moat (mx.example.test) otherwise.
func banner(t *testing.T, src, addr string) string {
	t.Helper()
	c := Dial(t, src, addr)
	defer c.Close()
	_, text := c.Reply(t)
	return text
}

func viaBypass(text string) bool { return strings.Contains(text, "backend.example.test") }

func TestKernelBypassWithRealPostfix(t *testing.T) {
	needNftables(t)
	const trap = "trap@example.test"
	b := StartBackendWithBypass(t, alice)
	_, bport, _ := net.SplitHostPort(b.Bypass)
	table := fmt.Sprintf("moate2e_%d", os.Getpid())
	t.Cleanup(func() {
		if _, err := bypass.Retire(table); err != nil {
			t.Errorf("deleting the test's table: %v", err)
		}
	})
	m := StartMoat(t, moatConfig(`
[greylist]
greet_delay = "100ms"
min_retry = "1s"

[tarpit]
stutter = "10ms"

[traps]
addresses = ["`+trap+`"]
follow = ["{{maillog}}"]

[bypass]
mode = "nftables"
port = {{bypass_port}}
table = "{{table}}"
`), "{{backend}}", b.Addr, "{{maillog}}", b.Dir+"/maillog", "{{bypass_port}}", bport, "{{table}}", table)

	// A grey host meets moat.
	if got := banner(t, "127.0.0.6", m.Addr); viaBypass(got) {
		t.Errorf("grey host was greeted by %q, want moat", got)
	}

	// A host the operator whitens reaches Postfix directly, which sees
	// its own address.
	m.CLI(t, "hosts", "white", "127.0.0.5")
	c := Dial(t, "127.0.0.5", m.Addr)
	if code, text := c.Reply(t); code != 220 || !viaBypass(text) {
		t.Fatalf("white host was greeted by %d %q, want Postfix's banner", code, text)
	}
	for _, cmd := range []string{"EHLO white.example", "MAIL FROM:<bob@white.example>", "RCPT TO:<" + alice + ">"} {
		if code, text := c.Cmd(t, cmd); code/100 != 2 {
			t.Fatalf("%s: %d %s", cmd, code, text)
		}
	}
	b.WaitLog(t, `postfix/bypass/smtpd\[\d+\]: [0-9A-F]+: client=[^ ]*\[127\.0\.0\.5\]`, 10*time.Second)

	// moat restarts in the middle of that session, which goes on.
	m.Restart(t)
	if code, text := c.Cmd(t, "DATA"); code != 354 {
		t.Fatalf("DATA after moat's restart: %d %s", code, text)
	}
	if code, text := c.Cmd(t, "Subject: past moat\r\n\r\nhello\r\n."); code != 250 {
		t.Fatalf("end of data after moat's restart: %d %s", code, text)
	}
	c.Cmd(t, "QUIT")
	if msgs := b.WaitMessages(t, alice, 1, 20*time.Second); !strings.Contains(msgs[0], "Subject: past moat") {
		t.Errorf("delivered: %q", msgs[0])
	}

	// moat status shows the set sizes.
	if out := m.CLI(t, "status"); !strings.Contains(out, "kernel bypass: inet "+table+": 1 white hosts (1 IPv4, 0 IPv6)") {
		t.Errorf("moat status:\n%s\nwant the kernel's set sizes", out)
	}

	// Blacklisted mid-test, the host meets moat on its next connection.
	m.CLI(t, "hosts", "black", "127.0.0.5")
	if got := banner(t, "127.0.0.5", m.Addr); viaBypass(got) {
		t.Errorf("blacklisted host was greeted by %q, want moat's tarpit", got)
	}

	// A host that passes the greylist and has its message accepted is
	// white: its next connection bypasses moat.
	pass := func(try int) int {
		c := Dial(t, "127.0.0.7", m.Addr)
		defer c.Close()
		c.Reply(t)
		c.Cmd(t, "EHLO pass.example")
		c.Cmd(t, "MAIL FROM:<carol@pass.example>")
		code, _ := c.Cmd(t, "RCPT TO:<"+alice+">")
		if code == 250 {
			c.Cmd(t, "DATA")
			code, _ = c.Cmd(t, fmt.Sprintf("Subject: try %d\r\n\r\nhi\r\n.", try))
		}
		c.Cmd(t, "QUIT")
		return code
	}
	if code := pass(1); code != 451 {
		t.Fatalf("first try: RCPT got %d, want 451 (greylisted)", code)
	}
	time.Sleep(1100 * time.Millisecond) // greylist.min_retry
	if code := pass(2); code != 250 {
		t.Fatalf("retry: end of data got %d, want 250", code)
	}
	if got := banner(t, "127.0.0.7", m.Addr); !viaBypass(got) {
		t.Fatalf("host whitened by an accepted message was greeted by %q, want Postfix", got)
	}

	// It names a trap to Postfix, which refuses it and logs it; moat reads
	// the log, and the host is no longer white: it meets moat again.
	c = Dial(t, "127.0.0.7", m.Addr)
	c.Reply(t)
	c.Cmd(t, "EHLO pass.example")
	c.Cmd(t, "MAIL FROM:<carol@pass.example>")
	if code, text := c.Cmd(t, "RCPT TO:<"+trap+">"); code != 550 {
		t.Fatalf("trap at Postfix: %d %s, want 550", code, text)
	}
	c.Cmd(t, "QUIT")
	c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for viaBypass(banner(t, "127.0.0.7", m.Addr)) {
		if time.Now().After(deadline) {
			t.Fatalf("20s after naming a trap to Postfix the host still bypasses moat; hosts: %v", m.Hosts(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if class := m.Hosts(t)["127.0.0.7"]; class == "white" {
		t.Errorf("after the trap the host is %s", class)
	}
}
