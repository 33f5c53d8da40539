package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// smugglingVariants are the end-of-data look-alikes published with the
// SMTP smuggling research (SEC Consult, December 2023) and the follow-ups
// that tried every mix of bare CR, bare LF and NUL around the dot. Only
// CRLF.CRLF ends DATA; a server that takes any of these for an end while
// the next hop does not (or the other way round) lets a client hide a
// second message inside the first.
var smugglingVariants = []struct {
	name, seq string
	smuggler  bool // a lax end of data: the host is blacklisted too
}{
	{"LF.LF", "\n.\n", true},
	{"LF.CRLF", "\n.\r\n", true},
	{"CRLF.LF", "\r\n.\n", true},
	{"CR.CR", "\r.\r", true},
	{"CR.CRLF", "\r.\r\n", true},
	{"CRLF.CR", "\r\n.\r", true},
	{"LF.CR", "\n.\r", true},
	{"CR.LF", "\r.\n", true},
	{"CRLF.CRCRLF", "\r\n.\r\r\n", true},
	{"LFLF.LFLF", "\n\n.\n\n", false},
	{"CRLF NUL.CRLF", "\r\n\x00.\r\n", true},
	{"CRLF.NUL CRLF", "\r\n.\x00\r\n", true},
	{"CRLF NUL.NUL CRLF", "\r\n\x00.\x00\r\n", true},
	{"CRLF.CRLF-in-LF", "\n\r\n.\r\n", false},
}

// smuggledPayload is DATA content that hides, behind seq, a whole second
// transaction from smuggler@evil.test; it ends with the real CRLF.CRLF.
func smuggledPayload(i int, seq string) string {
	return fmt.Sprintf("From: <bob@sender.test>\r\nTo: <%[2]s>\r\nSubject: carrier %[1]d\r\n\r\ncarrier body %[1]d\r\n"+
		"%[3]sMAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<%[2]s>\r\nDATA\r\n"+
		"From: <ceo@example.test>\r\nTo: <%[2]s>\r\nSubject: SMUGGLED %[1]d\r\n\r\nwire the money\r\n.\r\n",
		i, alice, seq)
}

// Every smuggling variant, sent through a handed-off grey session to a
// real Postfix that is itself open to smuggling (smtpd_forbid_bare_newline
// = no, as before Postfix 3.9): moat refuses every one with 521 before the
// offending byte reaches the backend, which never delivers anything of
// it. A lax end of data blacklists its host (only a smuggler writes it); a
// bare LF inside a line does not (broken but legitimate software writes
// it), and neither whitens it. A control shows that the same Postfix,
// without moat, does deliver the hidden message.
func TestSmugglingHandOff(t *testing.T) {
	b := StartBackend(t, true, alice)
	reload(t, b.Postfix, "smtpd_forbid_bare_newline = no")

	// Control: straight to the backend, LF.LF ends the carrier and the
	// hidden transaction is delivered. If this ever stops happening the
	// backend no longer shows that the test below would catch a leak.
	func() {
		c := Dial(t, "127.0.0.1", b.Addr)
		defer c.Close()
		c.Write(t, string(ProxyV2Header(netip.MustParseAddrPort("127.9.0.1:40000"), netip.MustParseAddrPort(b.Addr))))
		expect(t, c, "", 220)
		expect(t, c, "EHLO control.test", 250)
		expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
		expect(t, c, "RCPT TO:<"+alice+">", 250)
		expect(t, c, "DATA", 354)
		c.Write(t, smuggledPayload(0, "\n.\n"))
		for i := 0; i < 4; i++ { // carrier 250, MAIL 250, RCPT 250, DATA 354
			c.Reply(t)
		}
		c.Reply(t) // the smuggled message's 250
		expect(t, c, "QUIT", 221)
		deadline := time.Now().Add(20 * time.Second)
		for countSubject(b, alice, "SMUGGLED 0") != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("control: the backend did not deliver the message smuggled straight to it; the test cannot show a leak:\n%s", tail(b.Log(), 20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	m := StartMoat(t, faultConfig(""), "{{backend}}", b.Addr)
	ip := func(i int) string { return fmt.Sprintf("127.8.%d.1", i+1) }
	var wg sync.WaitGroup
	// One more host than variants: the last proves delivery at the end.
	for i := range len(smugglingVariants) + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			greylistOnce(t, m, ip(i), "bob@sender.test", alice)
		}()
	}
	wg.Wait()
	time.Sleep(minRetry)

	for i, v := range smugglingVariants {
		t.Run(v.name, func(t *testing.T) {
			c := Dial(t, ip(i), m.Addr)
			defer c.Close()
			expect(t, c, "", 220)
			expect(t, c, "EHLO client.test", 250)
			expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
			expect(t, c, "RCPT TO:<"+alice+">", 250) // the backend's: handed off
			expect(t, c, "DATA", 354)
			c.Write(t, smuggledPayload(i+1, v.seq))
			code, text, err := c.tryReply()
			if err != nil || code != 521 {
				t.Fatalf("end of data: %q (%v), want 521", text, err)
			}
			// Refused before the bare CR, LF or NUL reached the
			// backend; the session ends, as Postfix ends it.
			if _, _, err := c.tryReply(); err == nil {
				t.Errorf("session went on after 521")
			}
			want := "grey"
			if v.smuggler {
				want = "black"
			}
			if class := m.Hosts(t)[ip(i)]; class != want {
				t.Errorf("%s is %q after %q, want %s", ip(i), class, text, want)
			}
		})
	}
	// Whatever was still on its way arrives before the final look: the
	// last session closed, so one more delivered message proves the
	// queue has moved past them.
	provePassDelivers(t, m, b, ip(len(smugglingVariants)), "after the smuggling attempts")
	checkNotSmugglingAfter(t, b)
	for i := range smugglingVariants {
		if n := countSubject(b, alice, fmt.Sprintf("carrier %d", i+1)); n != 0 {
			t.Errorf("carrier %d was delivered", i+1)
		}
	}
}

// checkNotSmugglingAfter checks for smuggled messages other than the
// control's (which the backend took with no moat in front of it).
func checkNotSmugglingAfter(t *testing.T, b *Backend) {
	t.Helper()
	msgs := b.Messages(alice)
	smuggled := 0
	for _, msg := range msgs {
		if rp := headerValue(msg, "Return-Path"); strings.Contains(rp, "smuggler@evil.test") {
			smuggled++
			if headerValue(msg, "Subject") != "SMUGGLED 0" {
				t.Errorf("a message smuggled through moat was delivered:\n%s", msg[:min(len(msg), 600)])
			}
		}
	}
	if smuggled != 1 {
		t.Errorf("backend holds %d smuggled messages, want only the control's", smuggled)
	}
	if n := b.CountLog(`from=<smuggler@evil\.test>`); n != 1 {
		t.Errorf("backend logged %d transactions from the smuggler, want only the control's", n)
	}
}

// moat offers no CHUNKING, in the grey dialog or after the hand-off, and
// answers BDAT with 502 in both: BDAT would let a message end where moat's
// DATA reader never looks.
func TestSmugglingNoChunking(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, faultConfig(""), "{{backend}}", b.Addr)
	greylistOnce(t, m, "127.8.100.1", "bob@sender.test", alice)

	c := Dial(t, "127.8.100.1", m.Addr)
	expect(t, c, "", 220)
	if text := expect(t, c, "EHLO client.test", 250); strings.Contains(strings.ToUpper(text), "CHUNKING") {
		t.Errorf("grey EHLO offers CHUNKING:\n%s", text)
	}
	expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
	expect(t, c, "BDAT 10 LAST", 502)
	c.Close()

	time.Sleep(minRetry)
	c = handedOff(t, m, "127.8.100.1", "bob@sender.test", alice)
	defer c.Close()
	expect(t, c, "BDAT 10 LAST", 502)
	expect(t, c, "RSET", 250)
	if text := expect(t, c, "EHLO client.test", 250); strings.Contains(strings.ToUpper(text), "CHUNKING") {
		t.Errorf("EHLO after the hand-off offers CHUNKING (the backend does; moat must not pass that on):\n%s", text)
	}
	expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
	expect(t, c, "RCPT TO:<"+alice+">", 250)
	expect(t, c, "BDAT 5 LAST", 502)
	// The 5 bytes a client would send after BDAT arrive as a line; moat
	// takes it for an unknown command, not as message content.
	if code, _ := c.Cmd(t, "hello"); code == 250 {
		t.Errorf("BDAT payload taken as something")
	}
	expect(t, c, "QUIT", 221)
	if n := b.AllMessages(); n != 0 {
		t.Errorf("backend delivered %d messages from BDAT attempts", n)
	}
	if n := b.CountLog(`BDAT`); n != 0 {
		t.Errorf("BDAT reached the backend:\n%s", b.Log())
	}
}
