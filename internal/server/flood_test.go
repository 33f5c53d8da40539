package server_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"moat/internal/server/servertest"
)

// One address that opens many connections gets limits.max_conns_per_ip of
// them served; the rest are closed at once, and other hosts are still
// served.
func TestPerIPCapKeepsOthersServed(t *testing.T) {
	w := servertest.Start(t, servertest.Config{})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	served, refused := 0, 0
	for i := 0; i < 60; i++ {
		c, br := w.Dial("127.0.0.40")
		held = append(held, c)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := br.ReadString('\n')
		switch {
		case err == nil && strings.HasPrefix(l, "220 "):
			served++
		case err == io.EOF:
			refused++
		default:
			t.Fatalf("connection %d: %q %v", i, l, err)
		}
	}
	if served != 20 || refused != 40 {
		t.Fatalf("served %d, refused %d; want 20 served (max_conns_per_ip) and 40 refused", served, refused)
	}
	c, br := w.Dial("127.0.0.41")
	defer c.Close()
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "220 ") {
		t.Fatalf("another host was not served: %q %v", l, err)
	}
	if got := w.Srv.Stats().Refused["max_conns_per_ip"]; got != 40 {
		t.Fatalf("refused counter %d, want 40", got)
	}
}

// A line of megabytes gets one "line too long" and the session goes on in
// step; binary garbage gets errors until the error limit ends the session.
func TestHugeLineAndGarbage(t *testing.T) {
	w := servertest.Start(t, servertest.Config{})
	c, br := w.Dial("127.0.0.42")
	defer c.Close()
	readBanner(t, c, br)
	go func() {
		bw := bufio.NewWriter(c)
		bw.WriteString("EHLO ")
		for i := 0; i < 4<<20/64; i++ {
			bw.WriteString(strings.Repeat("x", 64))
		}
		bw.WriteString("\r\nNOOP\r\n")
		bw.Flush()
	}()
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "500 5.5.0 Error: line too long") {
		t.Fatalf("huge line: got %q", l)
	}
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "250 2.0.0 Ok") {
		t.Fatalf("after a huge line the dialog is out of step: got %q", l)
	}
	garbage := "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\xff\xfe\xfd\r\n"
	for i := 0; i < 20; i++ {
		if _, err := io.WriteString(c, garbage); err != nil {
			break
		}
	}
	var last string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			break
		}
		last = l
	}
	if !strings.HasPrefix(last, "421 4.7.0") {
		t.Fatalf("garbage: last reply %q, want 421 4.7.0 too many errors", last)
	}
}
