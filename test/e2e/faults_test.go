package e2e

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests break things under moat while mail flows through it: the
// backend is killed mid-message, stopped, made to refuse; moat itself is
// killed mid-session. Whatever breaks, a message the client was told 250
// for is in the backend exactly once, and a message it was not told 250 for
// is not delivered (the client still has it and will retry).

// faultConfig is a moat that greylists briefly, so a test can pass a
// triplet in about a second, and greets at once.
func faultConfig(extra string) string {
	return moatConfig(`
[greylist]
greet_delay = "0s"
min_retry = "1s"
retry_window = "1h"
` + extra)
}

// minRetry is a little more than faultConfig's greylist.min_retry.
const minRetry = 1200 * time.Millisecond

// killPostfix sends SIGKILL to an instance's whole process group (master,
// smtpd, cleanup, qmgr...): a crash, with no chance to finish anything.
func killPostfix(t testing.TB, p *Postfix) {
	t.Helper()
	syscall.Kill(-p.master.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.dismiss()
}

// stopPostfix stops an instance as "postfix stop" does.
func stopPostfix(t testing.TB, p *Postfix) {
	t.Helper()
	p.master.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: master ignored SIGTERM for 10s", p.name)
	}
	syscall.Kill(-p.master.Process.Pid, syscall.SIGKILL)
	p.dismiss()
}

// startPostfixAgain starts a new master over an instance's directories
// after stopPostfix or killPostfix, queue and Maildirs as they were left.
// The cleanup registered by startPostfix stops the new master.
func startPostfixAgain(t testing.TB, p *Postfix) {
	t.Helper()
	select {
	case <-p.done:
	default:
		t.Fatalf("%s: start again while the master runs", p.name)
	}
	started := strings.Count(p.Log(), "daemon started")
	cmd := exec.Command(tools.master, "-c", p.Config, "-d", "-e", strconv.Itoa(int(masterLifetime/time.Second)))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start master again: %v", p.name, err)
	}
	done := make(chan struct{})
	p.master, p.done = cmd, done
	go func() {
		cmd.Wait()
		close(done)
	}()
	p.dismiss = watchdog(t, cmd.Process.Pid, p.Dir)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.Log(), "daemon started") <= started {
		select {
		case <-done:
			t.Fatalf("%s: master exited at restart: %s\nmaillog:\n%s", p.name, cmd.ProcessState, tail(p.Log(), 30))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: master did not start again within 10s\nmaillog:\n%s", p.name, tail(p.Log(), 30))
		}
	}
}

// startBackendAgain is startPostfixAgain for a backend: it returns once
// smtpd listens.
func startBackendAgain(t testing.TB, b *Backend) {
	t.Helper()
	startPostfixAgain(t, b.Postfix)
	if !waitListening(b.Addr, 10*time.Second, b.done) {
		t.Fatalf("backend: smtpd is not listening on %s after restart", b.Addr)
	}
}

// reload is Postfix.Set that returns once the master has logged the
// reload, so the next session meets the new settings.
func reload(t testing.TB, p *Postfix, params ...string) {
	t.Helper()
	before := p.CountLog(`: reload -- `)
	p.Set(t, params...)
	deadline := time.Now().Add(10 * time.Second)
	for p.CountLog(`: reload -- `) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no reload logged within 10s of postconf -e %q", p.name, params)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tryReply reads one reply like Client.Reply, but returns a broken
// connection as an error instead of failing the test: for these tests a
// connection that breaks is an outcome, not a test failure.
func (c *Client) tryReply() (int, string, error) {
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, strings.Join(lines, "\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 3 {
			return 0, strings.Join(lines, "\n"), fmt.Errorf("malformed reply line %q", line)
		}
		if len(line) == 3 || line[3] == ' ' {
			code, err := strconv.Atoi(line[:3])
			if err != nil {
				return 0, strings.Join(lines, "\n"), fmt.Errorf("malformed reply line %q", line)
			}
			return code, strings.Join(lines, "\n"), nil
		}
	}
}

// outcome is how one message ended for the sending client.
type outcome struct {
	code int    // the reply to the end of data; 0 when none came
	text string // its text
	err  error  // why no reply came
}

func (o outcome) String() string {
	if o.err != nil {
		return fmt.Sprintf("no reply (%v)", o.err)
	}
	return strconv.Quote(o.text)
}

// accepted reports whether the client was told the message is delivered.
func (o outcome) accepted() bool { return o.code == 250 }

// messageBody is a message of about size bytes whose Subject is subject.
func messageBody(subject string, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <bob@sender.test>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@sender.test>\r\n\r\n", alice, subject, strings.ReplaceAll(subject, " ", "."))
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "line %06d of %s: the quick brown fox jumps over the lazy dog\r\n", i, subject)
	}
	return b.String()
}

// sendSlowly writes DATA content msg (without the final ".\r\n") in chunks
// of 4 KiB with a pause after each, calls fault once when half of it is
// written, writes the end of data and reads the reply. A write or read that
// fails ends the attempt: the outcome then has no code.
func sendSlowly(c *Client, msg string, pause time.Duration, fault func()) outcome {
	const chunk = 4096
	data := msg + ".\r\n"
	half := len(data) / 2
	faulted := false
	for off := 0; off < len(data); off += chunk {
		if !faulted && off >= half {
			fault()
			faulted = true
		}
		end := min(off+chunk, len(data))
		if _, err := c.Conn.Write([]byte(data[off:end])); err != nil {
			return outcome{err: fmt.Errorf("write at byte %d: %w", off, err)}
		}
		time.Sleep(pause)
	}
	code, text, err := c.tryReply()
	return outcome{code: code, text: text, err: err}
}

// greylistOnce makes the first attempt of triplet (ip, from, rcpt) so that
// a retry after minRetry is handed off.
func greylistOnce(t *testing.T, m *Moat, ip, from, rcpt string) {
	t.Helper()
	c := Dial(t, ip, m.Addr)
	defer c.Close()
	expect(t, c, "", 220)
	expect(t, c, "EHLO client.test", 250)
	expect(t, c, "MAIL FROM:<"+from+">", 250)
	if text := expect(t, c, "RCPT TO:<"+rcpt+">", 451); !strings.Contains(text, "4.7.1") {
		t.Fatalf("first attempt from %s: %q, want 451 4.7.1", ip, text)
	}
	expect(t, c, "QUIT", 221)
}

// handedOff opens the retry of a greylisted triplet and returns the client
// with the hand-off done: the backend took MAIL and RCPT.
func handedOff(t *testing.T, m *Moat, ip, from, rcpt string) *Client {
	t.Helper()
	c := Dial(t, ip, m.Addr)
	expect(t, c, "", 220)
	expect(t, c, "EHLO client.test", 250)
	expect(t, c, "MAIL FROM:<"+from+">", 250)
	expect(t, c, "RCPT TO:<"+rcpt+">", 250)
	return c
}

// spliced opens a session of a white host: the backend's banner comes
// through moat.
func spliced(t *testing.T, m *Moat, ip string) *Client {
	t.Helper()
	c := Dial(t, ip, m.Addr)
	if text := expect(t, c, "", 220); !strings.Contains(text, "backend.example.test") {
		t.Fatalf("white host %s: banner %q, want the backend's", ip, text)
	}
	expect(t, c, "EHLO white.test", 250)
	return c
}

// countSubject returns how many messages in mailbox have subject.
func countSubject(b *Backend, mailbox, subject string) int {
	n := 0
	for _, msg := range b.Messages(mailbox) {
		if headerValue(msg, "Subject") == subject {
			n++
		}
	}
	return n
}

// headerValue returns the first header field called name of a raw message
// ("" if there is none), looking only at the header section.
func headerValue(msg, name string) string {
	sc := bufio.NewScanner(strings.NewReader(msg))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			return ""
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// checkOutcome asserts the never-lose property for one message: accepted
// means in the mailbox exactly once, anything else means not delivered.
// It waits for an accepted message to arrive.
func checkOutcome(t *testing.T, b *Backend, subject string, o outcome) {
	t.Helper()
	if o.accepted() {
		deadline := time.Now().Add(20 * time.Second)
		for countSubject(b, alice, subject) == 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := countSubject(b, alice, subject); n != 1 {
			t.Errorf("%q: client got %s, backend has it %d times, want exactly once", subject, o, n)
		}
		return
	}
	if o.err == nil && (o.code < 400 || o.code > 599) {
		t.Errorf("%q: client got %s: want 250, a 4xx or 5xx, or a broken connection", subject, o)
	}
	if n := countSubject(b, alice, subject); n != 0 {
		t.Errorf("%q: client got %s (not accepted), yet the backend delivered it %d times", subject, o, n)
	}
}

// proveDelivers sends one small message through a new white session and
// waits for it: once it is in the mailbox, anything the backend was going
// to do with an earlier, broken message is done too.
func proveDelivers(t *testing.T, m *Moat, b *Backend, ip, subject string) {
	t.Helper()
	c := spliced(t, m, ip)
	defer c.Close()
	deliver(t, b, c, subject)
}

// provePassDelivers shows that ip, whose triplet (bob@sender.test, alice)
// passed the greylist but which never had a message accepted, is still
// grey — a pass alone does not whiten — that its next retry is handed off
// and delivered, and that the accepted message makes it white.
func provePassDelivers(t *testing.T, m *Moat, b *Backend, ip, subject string) {
	t.Helper()
	if class := m.Hosts(t)[ip]; class == "white" {
		t.Fatalf("%s is white without an accepted message", ip)
	}
	c := handedOff(t, m, ip, "bob@sender.test", alice)
	defer c.Close()
	deliver(t, b, c, subject)
	if class := m.Hosts(t)[ip]; class != "white" {
		t.Errorf("%s is %q after the backend accepted its message, want white", ip, class)
	}
}

// deliver sends one message on c, past RCPT already or not, and waits for
// the backend to deliver it.
func deliver(t *testing.T, b *Backend, c *Client, subject string) {
	t.Helper()
	if code, _ := c.Cmd(t, "RSET"); code != 250 {
		t.Fatalf("RSET: %d", code)
	}
	expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
	expect(t, c, "RCPT TO:<"+alice+">", 250)
	expect(t, c, "DATA", 354)
	expect(t, c, messageBody(subject, 100)+".", 250)
	expect(t, c, "QUIT", 221)
	deadline := time.Now().Add(20 * time.Second)
	for countSubject(b, alice, subject) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%q: not delivered after the fault cleared; backend maillog:\n%s", subject, tail(b.Log(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The backend dies (SIGKILL of its whole process group) in the middle of a
// message, once in a white host's splice and once in a handed-off grey
// session. Neither client is told 250, and nothing is delivered, not even
// after the backend is back.
func TestFaultBackendKilledMidData(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, faultConfig(""), "{{backend}}", b.Addr)
	m.CLI(t, "hosts", "white", "127.0.10.1")

	// A white host's splice: moat copies bytes and the backend's death
	// reaches the client as a broken connection.
	c := spliced(t, m, "127.0.10.1")
	expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
	expect(t, c, "RCPT TO:<"+alice+">", 250)
	expect(t, c, "DATA", 354)
	white := sendSlowly(c, messageBody("killed in splice", 256<<10), 5*time.Millisecond, func() { killPostfix(t, b.Postfix) })
	c.Close()
	if white.accepted() {
		t.Errorf("white host: backend killed mid-DATA, client got %s", white)
	}

	// A handed-off grey session: moat reads the client's message to its
	// end and answers 451, so the client keeps it.
	startBackendAgain(t, b)
	greylistOnce(t, m, "127.0.11.1", "bob@sender.test", alice)
	time.Sleep(minRetry)
	c = handedOff(t, m, "127.0.11.1", "bob@sender.test", alice)
	expect(t, c, "DATA", 354)
	grey := sendSlowly(c, messageBody("killed in hand-off", 256<<10), 5*time.Millisecond, func() { killPostfix(t, b.Postfix) })
	c.Close()
	if grey.err != nil || grey.code/100 != 4 {
		t.Errorf("hand-off: backend killed mid-DATA, client got %s, want a 4xx after its end of data", grey)
	}

	startBackendAgain(t, b)
	proveDelivers(t, m, b, "127.0.10.1", "after the kills")
	checkOutcome(t, b, "killed in splice", white)
	checkOutcome(t, b, "killed in hand-off", grey)
}

// With the backend stopped, a white host gets 421 instead of a banner and
// a grey host whose retry passes gets 451 at that RCPT; both keep their
// mail. Once the backend is back, both are served.
func TestFaultBackendStopped(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, faultConfig(""), "{{backend}}", b.Addr)
	m.CLI(t, "hosts", "white", "127.0.12.1")
	stopPostfix(t, b.Postfix)

	c := Dial(t, "127.0.12.1", m.Addr)
	code, text, err := c.tryReply()
	if err != nil || code != 421 {
		t.Errorf("white host, backend stopped: got %d %q (%v), want 421", code, text, err)
	}
	c.Close()

	greylistOnce(t, m, "127.0.13.1", "bob@sender.test", alice)
	time.Sleep(minRetry)
	c = Dial(t, "127.0.13.1", m.Addr)
	expect(t, c, "", 220)
	expect(t, c, "EHLO client.test", 250)
	expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
	if text := expect(t, c, "RCPT TO:<"+alice+">", 451); !strings.Contains(text, "4.4.1") {
		t.Errorf("greylist pass, backend stopped: %q, want 451 4.4.1", text)
	}
	// DATA without an accepted recipient is refused; nothing is taken.
	if code, text := c.Cmd(t, "DATA"); code == 354 || code == 250 {
		t.Errorf("DATA after the backend was unreachable: %q", text)
	}
	c.Close()

	startBackendAgain(t, b)
	// The white host is spliced; the grey one passed the greylist but
	// had nothing accepted, so it is still grey: its retry is handed off
	// and delivered, and that makes it white.
	proveDelivers(t, m, b, "127.0.12.1", "white after outage")
	provePassDelivers(t, m, b, "127.0.13.1", "passed during outage")
	if n := b.AllMessages(); n != 2 {
		t.Errorf("backend has %d messages, want 2", n)
	}
}

// The backend refuses, temporarily and permanently, at RCPT, at DATA and at
// the end of data. Whether the client is spliced (white) or handed off
// (grey), it gets the backend's own code, never a 250 moat made up, and only
// the message the backend accepted is delivered.
func TestFaultBackendRefuses(t *testing.T) {
	b := StartBackend(t, true, alice)
	writeFile(t, filepath.Join(b.Config, "rcpt_access"), "tempfail@example.test 450 4.2.0 mailbox busy, try later\nrefuse@example.test 550 5.7.1 not for you\n")
	writeFile(t, filepath.Join(b.Config, "data_access"), "datatemp@sender.test 453 4.3.2 not now\n")
	writeFile(t, filepath.Join(b.Config, "eod_access"), "eodtemp@sender.test 451 4.3.0 queue file write error\neodperm@sender.test 554 5.7.1 message content rejected\n")
	reload(t, b.Postfix,
		"smtpd_recipient_restrictions = check_recipient_access texthash:"+filepath.Join(b.Config, "rcpt_access"),
		"smtpd_data_restrictions = check_sender_access texthash:"+filepath.Join(b.Config, "data_access"),
		"smtpd_end_of_data_restrictions = check_sender_access texthash:"+filepath.Join(b.Config, "eod_access"))
	m := StartMoat(t, faultConfig(""), "{{backend}}", b.Addr)
	m.CLI(t, "hosts", "white", "127.0.14.1")
	greylistOnce(t, m, "127.0.15.1", "bob@sender.test", alice)
	time.Sleep(minRetry)

	for _, mode := range []string{"splice", "hand-off"} {
		t.Run(mode, func(t *testing.T) {
			var c *Client
			if mode == "splice" {
				c = spliced(t, m, "127.0.14.1")
				expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
				expect(t, c, "RCPT TO:<"+alice+">", 250)
			} else {
				c = handedOff(t, m, "127.0.15.1", "bob@sender.test", alice)
			}
			defer c.Close()
			for _, step := range []struct {
				line string
				want int
				text string
			}{
				{"RCPT TO:<tempfail@example.test>", 450, "4.2.0|mailbox busy"},
				{"RCPT TO:<refuse@example.test>", 550, "5.7.1|not for you"},
				{"DATA", 354, ""},
				{messageBody("accepted via "+mode, 2000) + ".", 250, ""},
				{"MAIL FROM:<datatemp@sender.test>", 250, ""},
				{"RCPT TO:<" + alice + ">", 250, ""},
				{"DATA", 453, "4.3.2|not now"},
				{"RSET", 250, ""},
				{"MAIL FROM:<eodtemp@sender.test>", 250, ""},
				{"RCPT TO:<" + alice + ">", 250, ""},
				{"DATA", 354, ""},
				{messageBody("eod 451 via "+mode, 2000) + ".", 451, "4.3.0|queue file write error"},
				// Postfix keeps the transaction after an end-of-data
				// refusal; RSET ends it.
				{"RSET", 250, ""},
				{"MAIL FROM:<eodperm@sender.test>", 250, ""},
				{"RCPT TO:<" + alice + ">", 250, ""},
				{"DATA", 354, ""},
				{messageBody("eod 554 via "+mode, 2000) + ".", 554, "5.7.1|message content rejected"},
				{"QUIT", 221, ""},
			} {
				code, text := c.Cmd(t, step.line)
				short := step.line[:min(len(step.line), 40)]
				ok := code == step.want
				for _, part := range strings.Split(step.text, "|") {
					ok = ok && strings.Contains(text, part)
				}
				if !ok {
					t.Fatalf("after %q: got %q, want %d with %q (the backend's own reply)", short, text, step.want, step.text)
				}
			}
			b.WaitMessages(t, alice, 1, 20*time.Second)
			checkOutcome(t, b, "accepted via "+mode, outcome{code: 250})
			checkOutcome(t, b, "eod 451 via "+mode, outcome{code: 451})
			checkOutcome(t, b, "eod 554 via "+mode, outcome{code: 554})
		})
	}
	if n := b.CountLog(`to=<(tempfail|refuse)@example\.test>.*status=sent`); n != 0 {
		t.Errorf("backend delivered %d messages to refused recipients", n)
	}
}

// moat dies (SIGKILL) in the middle of a message, in a splice and in a
// hand-off: the client's connection breaks without a 250, the backend's
// connection breaks without an end of data, and nothing is delivered. moat
// starts again over its data dir and serves the same hosts.
func TestFaultMoatKilledMidSession(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, faultConfig(""), "{{backend}}", b.Addr)
	m.CLI(t, "hosts", "white", "127.0.16.1")

	c := spliced(t, m, "127.0.16.1")
	expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
	expect(t, c, "RCPT TO:<"+alice+">", 250)
	expect(t, c, "DATA", 354)
	white := sendSlowly(c, messageBody("moat killed in splice", 256<<10), 5*time.Millisecond, func() { m.Kill(t) })
	c.Close()
	if white.accepted() {
		t.Errorf("splice: moat killed mid-DATA, yet the client got %s", white)
	}
	m.Start(t)

	greylistOnce(t, m, "127.0.17.1", "bob@sender.test", alice)
	time.Sleep(minRetry)
	c = handedOff(t, m, "127.0.17.1", "bob@sender.test", alice)
	expect(t, c, "DATA", 354)
	grey := sendSlowly(c, messageBody("moat killed in hand-off", 256<<10), 5*time.Millisecond, func() { m.Kill(t) })
	c.Close()
	if grey.accepted() {
		t.Errorf("hand-off: moat killed mid-DATA, yet the client got %s", grey)
	}
	m.Start(t)

	// The grey host passed before the kill but had nothing accepted: its
	// retry is handed off and delivered.
	provePassDelivers(t, m, b, "127.0.17.1", "after moat came back")
	checkOutcome(t, b, "moat killed in splice", white)
	checkOutcome(t, b, "moat killed in hand-off", grey)
	// The backend saw both broken sessions end without a message.
	if n := b.CountLog(`lost connection after DATA`); n < 2 {
		t.Errorf("backend logged %d sessions lost after DATA, want 2:\n%s", n, tail(b.Log(), 30))
	}
}

// Real Postfix senders deliver through moat while faults come and go: the
// backend is stopped and started again, moat is killed and started again.
// Every message is delivered exactly once once the faults have cleared, and
// the senders' queues end empty.
func TestFaultPostfixSenderExactlyOnce(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, faultConfig(""), "{{backend}}", b.Addr)
	s1 := StartSender(t, m.Addr, "127.0.18.1")
	s2 := StartSender(t, m.Addr, "127.0.19.1")
	var subjects []string
	send := func(s *Sender, subject string) {
		t.Helper()
		s.Send(t, "bob@sender.test", alice, subject, "body of "+subject+"\n"+strings.Repeat("filler line of text\n", 2000))
		subjects = append(subjects, subject)
	}
	waitDeferrals := func(s *Sender, pattern string, n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for s.CountLog(pattern) < n {
			if time.Now().After(deadline) {
				t.Fatalf("sender %s: fewer than %d deferrals matching %q; log:\n%s", s.BindAddr, n, pattern, tail(s.Log(), 20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// All well: greylisted once, then delivered.
	send(s1, "m1 before faults")
	send(s1, "m2 before faults")
	b.WaitMessages(t, alice, 2, 40*time.Second)

	// The backend is down. s1 (white now) meets 421 at connect; s2 (new)
	// is greylisted, then its good retry meets 451 4.4.1.
	stopPostfix(t, b.Postfix)
	send(s1, "m3 backend down")
	send(s2, "m4 backend down, new host")
	waitDeferrals(s1, `status=deferred.*421`, 1)
	waitDeferrals(s2, `status=deferred.*4\.4\.1`, 1)
	if s1.QueueEmpty() || s2.QueueEmpty() {
		t.Fatal("a sender's queue is empty while the backend is down")
	}
	startBackendAgain(t, b)
	s1.Flush(t)
	s2.Flush(t)
	b.WaitMessages(t, alice, 4, 40*time.Second)

	// moat is killed. Both senders meet a closed port and keep their mail.
	m.Kill(t)
	refusedBefore := s1.CountLog(`status=deferred`) + s2.CountLog(`status=deferred`)
	send(s1, "m5 moat down")
	send(s2, "m6 moat down")
	deadline := time.Now().Add(30 * time.Second)
	for s1.CountLog(`status=deferred`)+s2.CountLog(`status=deferred`) < refusedBefore+2 {
		if time.Now().After(deadline) {
			t.Fatalf("senders did not defer while moat was down; logs:\n%s\n%s", tail(s1.Log(), 10), tail(s2.Log(), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s1.QueueEmpty() || s2.QueueEmpty() {
		t.Fatal("a sender's queue is empty while moat is down")
	}
	m.Start(t)
	s1.Flush(t)
	s2.Flush(t)

	b.WaitMessages(t, alice, len(subjects), 40*time.Second)
	s1.WaitQueueEmpty(t, 20*time.Second)
	s2.WaitQueueEmpty(t, 20*time.Second)
	for _, subj := range subjects {
		if n := countSubject(b, alice, subj); n != 1 {
			t.Errorf("%q delivered %d times, want exactly once", subj, n)
		}
	}
	if n := len(b.Messages(alice)); n != len(subjects) {
		t.Errorf("alice has %d messages, want %d", n, len(subjects))
	}
	// Message-IDs are unique too: no message was delivered twice under
	// another subject.
	ids := map[string]int{}
	for _, msg := range b.Messages(alice) {
		ids[headerValue(msg, "Message-ID")]++
	}
	for id, n := range ids {
		if n != 1 || id == "" {
			t.Errorf("Message-ID %q delivered %d times", id, n)
		}
	}
	if n := s1.CountLog(`status=bounced`) + s2.CountLog(`status=bounced`); n != 0 {
		t.Errorf("senders bounced %d messages; a fault must only ever defer", n)
	}
}
