package e2e

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Client is a bare SMTP client for dialogs that Postfix would not hold:
// it plays a host at any loopback address, writes whatever it is told,
// and counts how many reads each reply took (a tarpit's stutter shows as
// one read per byte).
type Client struct {
	Conn  net.Conn
	r     *bufio.Reader
	reads *countingConn
}

// countingConn counts the reads that returned data.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.n.Add(1)
	}
	return n, err
}

// Dial connects from localIP (e.g. "127.0.0.66") to addr. Every read and
// write after it must finish within a minute.
func Dial(t testing.TB, localIP, addr string) *Client {
	t.Helper()
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)},
		Timeout:   10 * time.Second,
	}
	conn, err := d.Dial("tcp4", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, localIP, err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(time.Minute))
	cc := &countingConn{Conn: conn}
	// bufio reads from the connection only when its buffer is empty, so
	// the count is of the reads the peer's pace made necessary.
	return &Client{Conn: conn, r: bufio.NewReaderSize(cc, 4096), reads: cc}
}

// Reads returns how many reads returned data since the last call.
func (c *Client) Reads() int {
	return int(c.reads.n.Swap(0))
}

// Write sends s as it is.
func (c *Client) Write(t testing.TB, s string) {
	t.Helper()
	if _, err := c.Conn.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// Reply reads one whole reply, all its lines, and returns its code and its
// text (the lines joined with "\n", codes included).
func (c *Client) Reply(t testing.TB) (int, string) {
	t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatalf("read reply after %q: %v", lines, err)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 3 {
			t.Fatalf("malformed reply line %q", line)
		}
		if len(line) == 3 || line[3] == ' ' {
			var code int
			if _, err := fmt.Sscanf(line[:3], "%d", &code); err != nil {
				t.Fatalf("malformed reply line %q", line)
			}
			return code, strings.Join(lines, "\n")
		}
		if line[3] != '-' {
			t.Fatalf("malformed reply line %q", line)
		}
	}
}

// Cmd sends one command line (CRLF added) and returns the reply.
func (c *Client) Cmd(t testing.TB, line string) (int, string) {
	t.Helper()
	c.Write(t, line+"\r\n")
	return c.Reply(t)
}

// Close closes the connection.
func (c *Client) Close() { c.Conn.Close() }

// ProxyV2Header returns a PROXY protocol v2 header for a TCP connection
// from src to dst, both IPv4 or both IPv6, as haproxy and moat write it.
// It is written by hand from the specification so that it checks moat's
// implementation rather than sharing it.
func ProxyV2Header(src, dst netip.AddrPort) []byte {
	sig := []byte("\r\n\r\n\x00\r\nQUIT\n")
	h := append([]byte(nil), sig...)
	h = append(h, 0x21) // version 2, command PROXY
	var addrs []byte
	if src.Addr().Is4() {
		h = append(h, 0x11) // AF_INET, STREAM
		a, b := src.Addr().As4(), dst.Addr().As4()
		addrs = append(append(addrs, a[:]...), b[:]...)
	} else {
		h = append(h, 0x21) // AF_INET6, STREAM
		a, b := src.Addr().As16(), dst.Addr().As16()
		addrs = append(append(addrs, a[:]...), b[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
	addrs = binary.BigEndian.AppendUint16(addrs, dst.Port())
	h = binary.BigEndian.AppendUint16(h, uint16(len(addrs)))
	return append(h, addrs...)
}
