package server_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"moat/internal/server/servertest"
)

// expect reads one reply (all its lines) and checks the last line's prefix.
func expect(t *testing.T, br *bufio.Reader, prefix string) []string {
	t.Helper()
	var lines []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("want %q, got %q, %v", prefix, lines, err)
		}
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			break
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, prefix) {
		t.Fatalf("want %q, got %q", prefix, lines)
	}
	return lines
}

// startTLS runs STARTTLS on a plain session; extra is sent in the clear in
// the same write, as an attacker injecting commands would.
func startTLS(t *testing.T, c net.Conn, br *bufio.Reader, extra string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	io.WriteString(c, "EHLO c\r\n")
	if ehlo := strings.Join(expect(t, br, "250 "), ""); !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("STARTTLS not offered with a certificate: %q", ehlo)
	}
	io.WriteString(c, "STARTTLS\r\n"+extra)
	expect(t, br, "220 2.0.0")
	tc := tls.Client(c, &tls.Config{ServerName: "mx.test", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, bufio.NewReader(tc)
}

// A sender whose policy demands TLS gets through greylisting: STARTTLS is
// offered, the greylist works under TLS, and the qualifying retry is handed
// to the backend.
func TestGreylistUnderTLS(t *testing.T) {
	w := servertest.Start(t, servertest.Config{MinRetry: time.Minute, TLS: servertest.SelfSigned(t, "mx.test")})
	for attempt := 0; attempt < 2; attempt++ {
		c, br := w.Dial("127.0.0.60")
		expect(t, br, "220 ")
		// Plaintext pipelined after STARTTLS must be dropped, not
		// taken as sent under TLS (CVE-2011-0411).
		tc, tbr := startTLS(t, c, br, "MAIL FROM:<injected@evil.example>\r\n")
		io.WriteString(tc, "EHLO c\r\n")
		if ehlo := strings.Join(expect(t, tbr, "250 "), ""); strings.Contains(ehlo, "STARTTLS") {
			t.Fatalf("STARTTLS offered again under TLS: %q", ehlo)
		}
		io.WriteString(tc, "MAIL FROM:<a@sender.example>\r\n")
		expect(t, tbr, "250 2.1.0")
		io.WriteString(tc, "RCPT TO:<bob@example.test>\r\n")
		if attempt == 0 {
			expect(t, tbr, "451 4.7.1")
			io.WriteString(tc, "QUIT\r\n")
			expect(t, tbr, "221")
			tc.Close()
			w.Clock.Advance(2 * time.Minute)
			continue
		}
		expect(t, tbr, "250 2.1.5")
		io.WriteString(tc, "DATA\r\n")
		expect(t, tbr, "354")
		io.WriteString(tc, "Subject: over TLS\r\n\r\nhello\r\n.\r\n")
		expect(t, tbr, "250 2.0.0")
		io.WriteString(tc, "QUIT\r\n")
		expect(t, tbr, "221")
		tc.Close()
	}
	if msgs := w.Backend.Messages(); len(msgs) != 1 || !strings.HasPrefix(msgs[0].Client, "127.0.0.60:") {
		t.Fatalf("backend: messages %+v; want 1 from 127.0.0.60", msgs)
	}
}

// Without a certificate STARTTLS is neither offered nor accepted.
func TestNoTLSWithoutCertificate(t *testing.T) {
	w := servertest.Start(t, servertest.Config{})
	c, br := w.Dial("127.0.0.61")
	defer c.Close()
	expect(t, br, "220 ")
	io.WriteString(c, "EHLO c\r\n")
	if ehlo := strings.Join(expect(t, br, "250 "), ""); strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("STARTTLS offered without a certificate: %q", ehlo)
	}
	io.WriteString(c, "STARTTLS\r\n")
	expect(t, br, "502 5.5.2")
}
