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
var smugglingVariants = []struct{ name, seq string }{
	{"LF.LF", "\n.\n"},
	{"LF.CRLF", "\n.\r\n"},
	{"CRLF.LF", "\r\n.\n"},
	{"CR.CR", "\r.\r"},
	{"CR.CRLF", "\r.\r\n"},
	{"CRLF.CR", "\r\n.\r"},
	{"LF.CR", "\n.\r"},
	{"CR.LF", "\r.\n"},
	{"CRLF.CRCRLF", "\r\n.\r\r\n"},
	{"LFLF.LFLF", "\n\n.\n\n"},
	{"CRLF NUL.CRLF", "\r\n\x00.\r\n"},
	{"CRLF.NUL CRLF", "\r\n.\x00\r\n"},
	{"CRLF NUL.NUL CRLF", "\r\n\x00.\x00\r\n"},
	{"CRLF.CRLF-in-LF", "\n\r\n.\r\n"},
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
// = no, as before Postfix 3.9): moat refuses the message with 521 or
// passes it whole, and the backend never delivers the hidden message. A
// control shows that the same Postfix, without moat, does deliver it.
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

	accepted := 0
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
			switch {
			case err != nil:
				t.Fatalf("no reply to the end of data: %v", err)
			case code == 521:
				// Refused before the bare CR or LF reached the
				// backend; the session ends.
				if _, _, err := c.tryReply(); err == nil {
					t.Errorf("session went on after 521")
				}
			case code == 250:
				// Passed whole: one message, the hidden part as
				// content. Nothing else comes from the backend.
				accepted++
				expect(t, c, "NOOP", 250)
				expect(t, c, "QUIT", 221)
				subject := fmt.Sprintf("carrier %d", i+1)
				deadline := time.Now().Add(20 * time.Second)
				for countSubject(b, alice, subject) != 1 {
					if time.Now().After(deadline) {
						t.Fatalf("carrier accepted with %q but not delivered", text)
					}
					time.Sleep(100 * time.Millisecond)
				}
				for _, msg := range b.Messages(alice) {
					if headerValue(msg, "Subject") == subject && !strings.Contains(msg, fmt.Sprintf("SMUGGLED %d", i+1)) {
						t.Errorf("carrier delivered without its content (the hidden part was cut off):\n%s", msg)
					}
				}
			default:
				t.Errorf("reply %q, want 521 or 250", text)
			}
		})
	}
	// Whatever was still on its way arrives before the final look: the
	// last session closed, so one more delivered message proves the
	// queue has moved past them.
	provePassDelivers(t, m, b, ip(len(smugglingVariants)), "after the smuggling attempts")
	checkNotSmugglingAfter(t, b)
	t.Logf("%d variants: %d refused with 521, %d passed whole as one message", len(smugglingVariants), len(smugglingVariants)-accepted, accepted)
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
