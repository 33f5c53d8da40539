package servertest

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// The recording backend reads the PROXY header, records what it is sent
// and answers as it was told to.
func TestBackendRecords(t *testing.T) {
	b := StartBackend(t)
	b.RcptReply("nobody@example.test", "550 5.1.1 <nobody@example.test>: User unknown")
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	src := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 40000}
	if _, err := proxyproto.HeaderProxyFromAddrs(2, src, c.RemoteAddr()).WriteTo(c); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	say := func(line, want string) {
		t.Helper()
		if line != "" {
			c.Write([]byte(line + "\r\n"))
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
	say("", "220")
	say("EHLO c", "250")
	say("MAIL FROM:<s@sender.test>", "250")
	say("RCPT TO:<nobody@example.test>", "550 5.1.1")
	say("RCPT TO:<alice@example.test>", "250")
	say("DATA", "354")
	say("Subject: x\r\n\r\nbody\r\n.", "250")
	say("QUIT", "221")
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(b.Conns()) == 0 || len(b.Messages()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := b.Messages()[0]
	if m.Client != "192.0.2.9:40000" || !strings.Contains(m.Data, "body") || len(m.Rcpts) != 1 {
		t.Errorf("message %+v, want one from 192.0.2.9 for alice", m)
	}
	if conn := b.Conns()[0]; conn.Client != "192.0.2.9:40000" || len(conn.Lines) == 0 || conn.Lines[0] != "EHLO c" {
		t.Errorf("connection %+v", conn)
	}
}
