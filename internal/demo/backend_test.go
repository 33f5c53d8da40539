package demo

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// The demo's backend takes a message only for the users it knows, names
// the client moat's PROXY header names, and refuses others as a real
// server does.
func TestBackendTakesKnownUsersOnly(t *testing.T) {
	b, err := startBackend([]string{"alice@demo.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	src := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
	h := proxyproto.HeaderProxyFromAddrs(2, src, c.RemoteAddr())
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	talk := func(line, want string) {
		t.Helper()
		if line != "" {
			if _, err := c.Write([]byte(line + "\r\n")); err != nil {
				t.Fatal(err)
			}
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", line, err)
			}
			if len(l) > 3 && l[3] == '-' {
				continue
			}
			if !strings.HasPrefix(l, want) {
				t.Fatalf("after %q: %q, want %q", line, l, want)
			}
			return
		}
	}
	talk("", "220 ")
	talk("EHLO c.test", "250 ")
	talk("RCPT TO:<alice@demo.test>", "503 ")
	talk("MAIL FROM:<s@sender.test>", "250 ")
	talk("RCPT TO:<nobody@demo.test>", "550 5.1.1")
	talk("DATA", "554 ")
	talk("RCPT TO:<Alice@demo.test>", "250 ")
	talk("DATA", "354 ")
	talk("Subject: hi\r\n\r\nhello\r\n.", "250 ")
	talk("QUIT", "221 ")
	msgs := b.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Client != netip.MustParseAddr("192.0.2.7") || m.From != "s@sender.test" || len(m.Rcpts) != 1 || m.Size == 0 {
		t.Errorf("message %+v, want one from s@sender.test via 192.0.2.7 for alice", m)
	}
}
