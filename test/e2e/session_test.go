package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// These tests follow a grey session past the greylist pass with real
// Postfix on both sides: a backend that refuses the hand-off, an
// internationalised sender, a DSN request.

const bob = "bob@example.test"

// sessionConfig greylists for 2s, within the Postfix sender's retry
// schedule, and greets at once.
func sessionConfig() string {
	return moatConfig(`
[greylist]
greet_delay = "0s"
min_retry = "2s"
retry_window = "1h"
`)
}

// noBounce checks that the sender gave up on nothing.
func noBounce(t *testing.T, s *Sender) {
	t.Helper()
	if n := s.CountLog(`status=bounced`); n != 0 {
		t.Errorf("the sender bounced %d recipients; a backend problem must cost a delay, never a message:\n%s", n, tail(s.Log(), 30))
	}
}

// The backend answers 421 at the hand-off, at its banner: both recipients
// are deferred (a 4xx with the backend's words), not bounced, and when the
// backend takes connections again the sender's next retry delivers both.
// The 421 is Postfix's own: a second connection from a client that may
// have only one.
func TestHandOff421AtBanner(t *testing.T) {
	b := StartBackend(t, true, alice, bob)
	reload(t, b.Postfix, "smtpd_client_connection_count_limit = 1", "smtpd_client_event_limit_exceptions =")
	m := StartMoat(t, sessionConfig(), "{{backend}}", b.Addr)
	const host = "127.0.30.1"

	// A connection of the host's own, straight to the backend, takes the
	// one slot it has there.
	hold := Dial(t, "127.0.0.1", b.Addr)
	hold.Write(t, string(ProxyV2Header(netip.MustParseAddrPort(host+":40000"), netip.MustParseAddrPort(b.Addr))))
	expect(t, hold, "", 220)

	s := StartSender(t, m.Addr, host)
	s.Send(t, "carol@sender.test", alice+","+bob, "refused at the hand-off", "hello both")
	s.WaitLog(t, `to=<`+bob+`>.*status=deferred .*451 4\.7\.1`, 20*time.Second)
	// The retry passes the greylist and meets the backend's 421.
	line := s.WaitLog(t, `to=<`+bob+`>.*status=deferred .*451 4\.7\.0 .*too many connections`, 30*time.Second)
	t.Logf("sender: %s", line)
	s.WaitLog(t, `to=<`+alice+`>.*status=deferred .*451 4\.7\.0 .*too many connections`, 10*time.Second)
	if n := b.AllMessages(); n != 0 {
		t.Fatalf("backend has %d messages while it refused", n)
	}
	noBounce(t, s)
	if class := m.Hosts(t)[host]; class == "white" {
		t.Errorf("%s is white without an accepted message", host)
	}

	hold.Close()
	b.WaitLog(t, `disconnect from [^ ]*\[`+strings.ReplaceAll(host, ".", `\.`)+`\]`, 10*time.Second)
	s.Flush(t)
	b.WaitMessages(t, alice, 1, 40*time.Second)
	b.WaitMessages(t, bob, 1, 20*time.Second)
	s.WaitQueueEmpty(t, 20*time.Second)
	noBounce(t, s)
	if na, nb := len(b.Messages(alice)), len(b.Messages(bob)); na != 1 || nb != 1 {
		t.Errorf("alice has %d messages and bob %d, want 1 each", na, nb)
	}
}

// The backend answers 421 to one recipient at the hand-off and hangs up
// (a Postfix access map's "421"): that recipient is deferred with the
// backend's words; the next one dials again, replays EHLO and MAIL, and is
// delivered in the same session (before, moat sent it a RCPT without
// MAIL, and the backend's 503 bounced it). The deferred copy is delivered
// once the backend takes it.
func TestHandOff421AtRcpt(t *testing.T) {
	b := StartBackend(t, true, alice, bob)
	access := filepath.Join(b.Config, "rcpt421")
	writeFile(t, access, alice+" 421 4.3.2 alice's mailbox is being moved, try again later\n")
	reload(t, b.Postfix, "smtpd_recipient_restrictions = check_recipient_access texthash:"+access)
	m := StartMoat(t, sessionConfig(), "{{backend}}", b.Addr)
	const host = "127.0.31.1"

	s := StartSender(t, m.Addr, host)
	s.Send(t, "carol@sender.test", alice+","+bob, "one refused at the hand-off", "hello both")
	msgs := b.WaitMessages(t, bob, 1, 40*time.Second)
	if !strings.Contains(msgs[0], "Subject: one refused at the hand-off") {
		t.Errorf("bob got:\n%s", msgs[0])
	}
	line := s.WaitLog(t, `to=<`+alice+`>.*status=deferred .*451 4\.3\.2 .*alice's mailbox is being moved`, 10*time.Second)
	t.Logf("sender: %s", line)
	if n := len(b.Messages(alice)); n != 0 {
		t.Fatalf("alice has %d messages while the backend refused her", n)
	}
	noBounce(t, s)
	if b.CountLog(`503 5\.5\.1`) != 0 {
		t.Errorf("the backend answered 503 (a RCPT without MAIL):\n%s", tail(b.Log(), 30))
	}

	reload(t, b.Postfix, "smtpd_recipient_restrictions =")
	s.Flush(t)
	b.WaitMessages(t, alice, 1, 40*time.Second)
	s.WaitQueueEmpty(t, 20*time.Second)
	noBounce(t, s)
	if na, nb := len(b.Messages(alice)), len(b.Messages(bob)); na != 1 || nb != 1 {
		t.Errorf("alice has %d messages and bob %d, want 1 each", na, nb)
	}
}

// A sender with an internationalised address (SMTPUTF8, RFC 6531) is
// greylisted like any other, passes, and is delivered. Before, moat did
// not offer SMTPUTF8 and a Postfix sender bounced such mail at once.
func TestSMTPUTF8PassesGreylisting(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, sessionConfig(), "{{backend}}", b.Addr)
	s := StartSender(t, m.Addr, "127.0.32.1")
	const sender = "josé@sender.test"
	s.Send(t, sender, alice, "from an internationalised address", "olá")
	s.WaitLog(t, `to=<`+alice+`>.*status=deferred .*451 4\.7\.1`, 20*time.Second)
	msgs := b.WaitMessages(t, alice, 1, 40*time.Second)
	s.WaitQueueEmpty(t, 10*time.Second)
	noBounce(t, s)
	if rp := headerValue(msgs[0], "Return-Path"); rp != "<"+sender+">" {
		t.Errorf("Return-Path %q, want <%s>", rp, sender)
	}
	b.WaitLog(t, `from=<`+regexp.QuoteMeta(sender)+`>`, 10*time.Second)
}

// A DSN request (NOTIFY=SUCCESS,FAILURE with ORCPT, RET and ENVID from the
// sender) passes greylisting and reaches the backend as sent: its log of
// the dialog shows the parameters, and it reports the success to the
// sender when it delivers.
func TestDSNPassesThrough(t *testing.T) {
	b := StartBackend(t, true, alice)
	const host = "127.0.33.1"
	// The backend logs the whole SMTP dialog of this client.
	reload(t, b.Postfix, "debug_peer_list = "+host, "debug_peer_level = 2")
	m := StartMoat(t, sessionConfig(), "{{backend}}", b.Addr)
	s := StartSender(t, m.Addr, host)
	s.Send(t, "carol@sender.test", alice, "with a DSN request", "tell me", "-N", "success,failure", "-R", "hdrs", "-V", "QQ314159")
	b.WaitMessages(t, alice, 1, 40*time.Second)
	s.WaitQueueEmpty(t, 10*time.Second)
	noBounce(t, s)
	for _, want := range []string{
		`MAIL FROM:<carol@sender\.test> .*RET=HDRS ENVID=QQ314159`,
		`RCPT TO:<` + alice + `> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;` + alice,
		`sender delivery status notification`,
	} {
		line := b.WaitLog(t, want, 10*time.Second)
		t.Logf("backend: %s", line)
	}
}

// Every message a host passes through a hand-off is only the start: a
// second one in the same session goes to the backend too, as moat writes
// it. (A counterpart of the unit scripts, against a real Postfix.)
func TestHandOffSecondTransaction(t *testing.T) {
	b := StartBackend(t, true, alice, bob)
	m := StartMoat(t, sessionConfig(), "{{backend}}", b.Addr)
	const host = "127.0.34.1"
	greylistOnce(t, m, host, "carol@sender.test", alice)
	time.Sleep(2200 * time.Millisecond)
	c := handedOff(t, m, host, "carol@sender.test", alice)
	defer c.Close()
	expect(t, c, "DATA", 354)
	expect(t, c, messageBody("first", 100)+".", 250)
	expect(t, c, "MAIL FROM:<carol@sender.test> BODY=8BITMIME", 250)
	expect(t, c, "RCPT TO:<"+bob+">", 250)
	expect(t, c, "RCPT TO:<nobody@example.test>", 550) // the backend's own refusal
	expect(t, c, "DATA", 354)
	expect(t, c, messageBody("second", 100)+".", 250)
	expect(t, c, "QUIT", 221)
	b.WaitMessages(t, alice, 1, 20*time.Second)
	b.WaitMessages(t, bob, 1, 20*time.Second)
	if n := b.CountLog(fmt.Sprintf(`client=[^ ]*\[%s\]`, strings.ReplaceAll(host, ".", `\.`))); n != 2 {
		t.Errorf("backend logged %d transactions from %s, want 2", n, host)
	}
}
