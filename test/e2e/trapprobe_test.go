package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTrapProbeAgainstRealPostfix checks, against a real Postfix backend,
// the rule that keeps mined traps safe: before a candidate is promoted moat
// asks the backend with an RCPT probe, and an address the backend accepts
// is never made a trap (it would blacklist the mailbox's correspondents).
func TestTrapProbeAgainstRealPostfix(t *testing.T) {
	const ghost = "ghost@example.test"
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(`
[greylist]
greet_delay = "100ms"

[tarpit]
stutter = "10ms"

[traps]
min_hosts = 3
domains = ["example.test"]
`), "{{backend}}", b.Addr)

	// The backend's own log says three hosts were told "User unknown" for
	// both addresses. For alice that is a lie (a log of another server, a
	// mailbox created since): only the probe can tell. Log lines count
	// only for hosts moat saw, so the three hosts first meet moat's
	// greylisting; a fourth, which never connected to moat, counts for
	// nothing.
	seen := []string{"127.0.0.23", "127.0.0.145", "127.0.0.77"}
	for _, h := range seen {
		c := Dial(t, h, m.Addr)
		expect(t, c, "", 220)
		expect(t, c, "EHLO bot.test", 250)
		expect(t, c, "MAIL FROM:<promo@offers.example>", 250)
		expect(t, c, "RCPT TO:<"+alice+">", 451)
		c.Close()
	}
	var mailLog strings.Builder
	for i, ip := range append(seen, "198.51.100.23") {
		for _, rcpt := range []string{alice, ghost} {
			fmt.Fprintf(&mailLog, "Mar  3 06:2%d:02 mx postfix/smtpd[12%d7]: NOQUEUE: reject: RCPT from unknown[%s]: "+
				"550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox table; "+
				"from=<promo@offers.example> to=<%s> proto=ESMTP helo=<bot%d.example>\n", i, i, ip, rcpt, rcpt, i)
		}
	}
	logFile := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(logFile, []byte(mailLog.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := m.CLI(t, "traps", "mine", logFile)
	if !strings.Contains(out, "8 rejections recorded") || !strings.Contains(out, "2 candidates") {
		t.Errorf("traps mine: %q, want 8 rejections recorded and 2 candidates", out)
	}
	cands := candidates(t, m)
	for _, a := range []string{alice, ghost} {
		if cands[a] != 3 {
			t.Fatalf("candidates %v: want %s with the 3 hosts moat saw", cands, a)
		}
	}
	if n := len(b.ClientAddrs()); n != 0 {
		t.Fatalf("backend saw %d connections before any promotion, want none: mining must not probe", n)
	}

	// alice is a real mailbox: the probe finds it, and promote refuses.
	stdout, stderr, err := moatCmd(t, m, "traps", "promote", alice)
	if err == nil {
		t.Errorf("traps promote %s succeeded (stdout %q), want a refusal: the backend accepts it", alice, stdout)
	}
	if !strings.Contains(stderr, "real mailbox") || !strings.Contains(stderr, "250") {
		t.Errorf("traps promote %s: stderr %q, want a refusal naming the backend's 250 and a real mailbox", alice, stderr)
	}
	// The probe went to the real backend, as moat's own 127.0.0.1, and
	// stopped at RCPT: one accepted recipient, no DATA. (smtpd logs
	// "client=" once a recipient is accepted; no message ever reaches
	// cleanup, the queue manager or the delivery agent.)
	b.WaitLog(t, `disconnect from [^ ]*\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 quit=1 commands=4$`, 10*time.Second)
	if n := b.CountLog(`postfix/(cleanup|qmgr|virtual)\[|message-id=|status=`); n != 0 {
		t.Errorf("backend logged %d message lines after the probe of %s, want none:\n%s", n, alice, b.Log())
	}
	if traps := trapList(t, m); traps[alice] {
		t.Errorf("traps list has %s after a refused promotion: %v", alice, traps)
	}
	if cands := candidates(t, m); cands[alice] != 0 {
		t.Errorf("%s is still a candidate after the backend accepted it: %v", alice, cands)
	}

	// ghost has no mailbox: the probe's RCPT meets Postfix's 550 5.1.1,
	// and promote makes it a trap.
	out = m.CLI(t, "traps", "promote", ghost)
	if !strings.Contains(out, ghost) || !strings.Contains(out, "550") {
		t.Errorf("traps promote %s: %q, want it added with the backend's 550", ghost, out)
	}
	b.WaitLog(t, `NOQUEUE: reject: RCPT from [^ ]*\[127\.0\.0\.1\]: 550 5\.1\.1 <`+regexp.QuoteMeta(ghost)+`>`, 10*time.Second)
	if traps := trapList(t, m); !traps[ghost] || traps[alice] {
		t.Errorf("traps list %v: want %s and not %s", traps, ghost, alice)
	}
	if cands := candidates(t, m); len(cands) != 0 {
		t.Errorf("candidates after both were decided: %v, want none", cands)
	}
	if n := b.AllMessages(); n != 0 {
		t.Errorf("backend delivered %d messages, want none: a probe never sends", n)
	}
	if n := b.CountLog(`postfix/(cleanup|qmgr|virtual)\[|message-id=|status=`); n != 0 {
		t.Errorf("backend logged %d message lines after the probes, want none:\n%s", n, b.Log())
	}
	if n := len(b.ClientAddrs()); n != 2 {
		t.Errorf("backend saw %d connections, want 2 (one probe per promotion): %v", n, b.ClientAddrs())
	}

	// The new trap works: a grey host that writes to ghost becomes black,
	// and the backend never hears of it.
	const botIP = "127.0.0.57"
	c := Dial(t, botIP, m.Addr)
	expect(t, c, "", 220)
	expect(t, c, "EHLO bot.test", 250)
	expect(t, c, "MAIL FROM:<bot@spam.test>", 250)
	if code, text := c.Cmd(t, "RCPT TO:<"+ghost+">"); code/100 == 2 || code/100 == 5 {
		t.Errorf("RCPT to the trap: %q, want the grey 4xx every recipient gets", text)
	}
	c.Close()
	waitBlack(t, m, botIP)
	if n := len(b.ClientAddrs()); n != 2 {
		t.Errorf("backend saw %d connections after the trap hit, want still 2: %v", n, b.ClientAddrs())
	}
}

// moatCmd runs "moat -c CONFIG args..." and, unlike Moat.CLI, returns a
// non-zero exit as an error for the test to judge.
func moatCmd(t *testing.T, m *Moat, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.bin, append([]string{"-c", m.Config}, args...)...)
	cmd.Dir = m.Dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("moat %s: no answer within 30s", strings.Join(args, " "))
	}
	return o.String(), e.String(), err
}

// candidates returns "moat traps candidates --json" as the number of hosts
// per candidate address.
func candidates(t *testing.T, m *Moat) map[string]int {
	t.Helper()
	out := m.CLI(t, "traps", "candidates", "--json")
	var list []struct {
		Addr  string   `json:"addr"`
		Hosts []string `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("traps candidates --json: %v\n%s", err, out)
	}
	cands := make(map[string]int)
	for _, c := range list {
		cands[c.Addr] = len(c.Hosts)
	}
	return cands
}

// trapList returns the addresses "moat traps list --json" shows.
func trapList(t *testing.T, m *Moat) map[string]bool {
	t.Helper()
	out := m.CLI(t, "traps", "list", "--json")
	var list []struct {
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("traps list --json: %v\n%s", err, out)
	}
	set := make(map[string]bool)
	for _, tr := range list {
		set[tr.Addr] = true
	}
	return set
}

// waitBlack polls "moat hosts list" until ip is black.
func waitBlack(t *testing.T, m *Moat, ip string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		class := m.Hosts(t)[ip]
		if class == "black" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q 10s after writing to a trap, want black", ip, class)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
