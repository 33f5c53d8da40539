package server

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// pipeConn feeds bytes to readProxyHeader through a real socket pair.
func proxyHeaderFrom(t testing.TB, b []byte) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		c.Write(b)
		time.Sleep(50 * time.Millisecond)
		c.Close()
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := readProxyHeader(c, time.Second)
	if err != nil {
		return "", err
	}
	// Nothing after the header may have been consumed.
	rest := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(time.Second))
	n, _ := c.Read(rest)
	return p.Client.String() + "|" + string(rest[:n]), nil
}

func TestReadProxyHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // client|following bytes, or "" for an error
	}{
		{"PROXY TCP4 192.0.2.9 127.0.0.1 40000 25\r\nEHLO", "192.0.2.9|EHLO"},
		{"PROXY TCP6 2001:db8::1 ::1 40000 25\r\nQUIT", "2001:db8::1|QUIT"},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x09\x7f\x00\x00\x01\x9c\x41\x00\x19HELO", "192.0.2.9|HELO"},
		{"PROXY TCP4 192.0.2.9 127.0.0.1 40000\r\n", ""},
		{"EHLO client.example\r\n", ""},
		{"PROXY " + string(make([]byte, 200)), ""},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", ""},
	} {
		got, err := proxyHeaderFrom(t, []byte(tc.in))
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: got %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzReadProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.9 127.0.0.1 40000 25\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x09\x7f\x00\x00\x01\x9c\x41\x00\x19"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Must never panic, and must never read past the header.
		r := bytes.NewReader(b)
		p, local, err := parseProxyHeader(r)
		if err == nil && !local && !p.Client.IsValid() {
			t.Fatalf("%q: accepted a header without a client address", b)
		}
		if err == nil && len(b)-r.Len() > 16+512 {
			t.Fatalf("%q: read %d bytes, more than any header", b, len(b)-r.Len())
		}
	})
}
