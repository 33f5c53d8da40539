package dialog_test

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/server/servertest"
	"moat/internal/store"
)

// Issue case 1: a host that turns black while one of its sessions is open
// must not deliver through it, and no pass may make it white again. The
// interleavings are forced, one step at a time, on two connections of one
// host (or a connection and the operator), with a recording backend.

// client is one SMTP connection of a test, read reply by reply.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, w *servertest.World, addr string) *client {
	c, br := w.Dial(addr)
	cl := &client{t: t, c: c, br: br}
	t.Cleanup(func() { c.Close() })
	cl.expect("", "220 ")
	return cl
}

// expect sends line (unless "") and reads one whole reply, which must
// start with want; it returns the reply.
func (c *client) expect(line, want string) string {
	c.t.Helper()
	if line != "" {
		if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
			c.t.Fatalf("send %q: %v", line, err)
		}
	}
	var all strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("after %q: read %q, %v; want %q", line, all.String()+l, err, want)
		}
		all.WriteString(l)
		if len(l) < 4 || l[3] != '-' {
			break
		}
	}
	if !strings.HasPrefix(all.String(), want) && !strings.Contains(all.String(), "\n"+want) {
		c.t.Fatalf("after %q: got %q, want %q", line, all.String(), want)
	}
	return all.String()
}

// greylisted makes host's triplet (s@sender.example, alice) pass from now
// on: a first attempt, then time. (The greylist folds IPv4 hosts by /24:
// hosts of one test are in different ones.)
func greylisted(t *testing.T, w *servertest.World, host string) {
	c := dial(t, w, host)
	c.expect("EHLO c", "250 ")
	c.expect("MAIL FROM:<s@sender.example>", "250 ")
	c.expect("RCPT TO:<alice@example.test>", "451 4.7.1")
	c.expect("RCPT TO:<bob@example.test>", "451 4.7.1")
	c.expect("QUIT", "221")
	w.Clock.Advance(2 * time.Minute)
}

// afterwards checks that the backend got no message and nothing for bob,
// and that host is black by src.
func afterwards(t *testing.T, w *servertest.World, host string, src store.Source) {
	t.Helper()
	if msgs := w.Backend.Messages(); len(msgs) != 0 {
		t.Errorf("the backend took %d messages: %+v", len(msgs), msgs)
	}
	for _, l := range w.Backend.Lines() {
		if strings.Contains(l, "bob@") || strings.Contains(l, "trap@") || l == "DATA" {
			t.Errorf("the backend got %q after the host turned black", l)
		}
	}
	h, ok, err := w.Store.Lookup(netip.MustParseAddr(host))
	if err != nil || !ok || h.Class != store.Black || classify.SourceOf(h) != src {
		t.Errorf("%s is %s by %s (%q, %v, %v), want black by %s", host, h.Class, classify.SourceOf(h), h.Reason, ok, err, src)
	}
}

// The rest of a session that went to the tarpit: a fake open relay that
// delivers nothing. Its message ends with final: "queued" for a proven
// bot, a 451 for a host black for a weaker reason.
func tarpitted(c *client, final string) {
	c.expect("RCPT TO:<victim@foreign.example>", "250 2.1.5")
	c.expect("DATA", "354")
	c.expect("Subject: x\r\n\r\nhello\r\n.", final)
	c.expect("QUIT", "221")
}

const (
	queued   = "250 2.0.0 Ok: queued as"
	deferred = "451 4.7.1 Client host deferred"
)

// Connection A of a host names a trap while connection B of the same host
// stands between MAIL and the RCPT that would pass.
func TestRaceTrapBeforeThePass(t *testing.T) {
	w := servertest.Start(t, servertest.Config{MinRetry: time.Minute, Traps: []string{"trap@example.test"}})
	const host = "127.0.1.1"
	greylisted(t, w, host)
	b := dial(t, w, host)
	b.expect("EHLO b", "250 ")
	b.expect("MAIL FROM:<s@sender.example>", "250 2.1.0")

	a := dial(t, w, host)
	a.expect("EHLO a", "250 ")
	a.expect("MAIL FROM:<x@sender.example>", "250 2.1.0")
	a.expect("RCPT TO:<trap@example.test>", "451 4.7.1")

	// The retry would pass; the host is black: the reply is a grey
	// host's, and the session is the tarpit's.
	b.expect("RCPT TO:<alice@example.test>", "451 4.7.1")
	b.expect("RCPT TO:<bob@example.test>", "250 2.1.5")
	tarpitted(b, queued)
	if n := len(w.Backend.Conns()); n != 0 {
		t.Errorf("the backend saw %d connections, want none", n)
	}
	afterwards(t, w, host, store.SourceTrap)
}

// Connection A of a host names a trap while connection B of the same host,
// past its pass with the backend attached, stands between two recipients
// (and, for a second host, between its recipients and DATA).
func TestRaceTrapAfterThePass(t *testing.T) {
	w := servertest.Start(t, servertest.Config{MinRetry: time.Minute, Traps: []string{"trap@example.test"}})
	for _, host := range []string{"127.0.2.1", "127.0.3.1"} {
		greylisted(t, w, host)
	}
	for i, host := range []string{"127.0.2.1", "127.0.3.1"} {
		b := dial(t, w, host)
		b.expect("EHLO b", "250 ")
		b.expect("MAIL FROM:<s@sender.example>", "250 2.1.0")
		b.expect("RCPT TO:<alice@example.test>", "250 2.1.5") // the backend's: attached

		a := dial(t, w, host)
		a.expect("EHLO a", "250 ")
		a.expect("MAIL FROM:<x@sender.example>", "250 2.1.0")
		a.expect("RCPT TO:<trap@example.test>", "451 4.7.1")

		if i == 0 {
			b.expect("RCPT TO:<bob@example.test>", "250 2.1.5")
			tarpitted(b, queued)
		} else {
			b.expect("DATA", "354")
			b.expect("Subject: x\r\n\r\nhello\r\n.", queued)
			b.expect("QUIT", "221")
		}
		afterwards(t, w, host, store.SourceTrap)
	}
	// The backend's side of each session ended without DATA.
	for _, c := range w.Backend.Conns() {
		if got := strings.Join(c.Lines, " | "); got != "EHLO b | MAIL FROM:<s@sender.example> | RCPT TO:<alice@example.test> | QUIT" {
			t.Errorf("backend connection got %q", got)
		}
	}
}

// The operator runs "moat hosts black" for a host between its session's
// MAIL and the RCPT that would pass, and for another between two
// recipients after the pass: nothing is delivered, and the operator's
// entry is still the operator's afterwards, whatever the sessions did.
func TestRaceOperator(t *testing.T) {
	w := servertest.Start(t, servertest.Config{MinRetry: time.Minute})
	hosts := []string{"127.0.4.1", "127.0.5.1"}
	for _, host := range hosts {
		greylisted(t, w, host)
	}
	operator := func(host string) {
		if err := w.Eng.SetClass(store.HostPrefix(netip.MustParseAddr(host)), store.Black, "moat hosts black "+host); err != nil {
			t.Fatal(err)
		}
	}

	b := dial(t, w, hosts[0])
	b.expect("EHLO b", "250 ")
	b.expect("MAIL FROM:<s@sender.example>", "250 2.1.0")
	operator(hosts[0])
	b.expect("RCPT TO:<alice@example.test>", "451 4.7.1")
	b.expect("RCPT TO:<bob@example.test>", "250 2.1.5")
	tarpitted(b, deferred)

	b = dial(t, w, hosts[1])
	b.expect("EHLO b", "250 ")
	b.expect("MAIL FROM:<s@sender.example>", "250 2.1.0")
	b.expect("RCPT TO:<alice@example.test>", "250 2.1.5")
	operator(hosts[1])
	b.expect("RCPT TO:<bob@example.test>", "250 2.1.5")
	tarpitted(b, deferred)

	for _, host := range hosts {
		afterwards(t, w, host, store.SourceOperator)
		h, _, _ := w.Store.Lookup(netip.MustParseAddr(host))
		if !h.Expires.IsZero() || h.Reason != "moat hosts black "+host {
			t.Errorf("%s: the operator's entry changed: %+v", host, h)
		}
	}
	// A later good retry of the same triplet does not undo it either.
	c := dial(t, w, hosts[1])
	c.expect("EHLO c", "250 ")
	c.expect("MAIL FROM:<s@sender.example>", "250 2.1.0")
	c.expect("RCPT TO:<alice@example.test>", "250 2.1.5")
	c.expect("DATA", "354")
	c.expect("Subject: x\r\n\r\nhello\r\n.", deferred)
	afterwards(t, w, hosts[1], store.SourceOperator)
}
