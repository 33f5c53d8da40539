package dialog_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"moat/internal/dialog"
	"moat/internal/server/servertest"
)

// offLoopback makes the backend look as if it were on another machine:
// its connections report a remote address off loopback. Everything else
// is the real dialer's.
type offLoopback struct{ be dialog.Backend }

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 25), Port: 25} }

func (o offLoopback) DialTLS(ctx context.Context, remote, local net.Addr, st *tls.ConnectionState) (net.Conn, error) {
	c, err := o.be.DialTLS(ctx, remote, local, st)
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

// serve runs one grey session of w's dialog on a connection from client,
// with backend be, and returns the client's end.
func serve(t *testing.T, w *servertest.World, be dialog.Backend, client string) (net.Conn, *bufio.Reader) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		// The listener closes only after the accept: closing it first
		// would reset a connection still waiting in its queue.
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		peer := dialog.Peer{Client: netip.MustParseAddr(client), Remote: c.RemoteAddr(), Local: c.LocalAddr()}
		dialog.Serve(context.Background(), c, peer, w.Dialog, w.Eng, w.Tarpit, be)
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// tlsSession greets, starts TLS and sends one message for alice; pass says
// the greylist lets it through (else it is deferred).
func tlsSession(t *testing.T, c net.Conn, br *bufio.Reader, pass bool) {
	cl := &client{t: t, c: c, br: br}
	cl.expect("", "220 ")
	cl.expect("EHLO c", "250-STARTTLS")
	cl.expect("STARTTLS", "220 2.0.0")
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl = &client{t: t, c: tc, br: bufio.NewReader(tc)}
	cl.expect("EHLO c", "250 ")
	cl.expect("MAIL FROM:<s@sender.example>", "250 2.1.0")
	if !pass {
		cl.expect("RCPT TO:<alice@example.test>", "451 4.7.1")
		cl.expect("QUIT", "221")
		return
	}
	cl.expect("RCPT TO:<alice@example.test>", "250 2.1.5")
	cl.expect("DATA", "354")
	cl.expect("Subject: over TLS\r\n\r\nhello\r\n.", "250 2.0.0")
	cl.expect("QUIT", "221")
}

// A client that spoke TLS with moat is handed to a backend on another
// machine over TLS (STARTTLS, when the backend offers it), and the
// backend learns of the client's TLS from the PROXY header. On this
// machine's loopback there is no TLS of moat's own, but the header says
// the same.
func TestHandOffKeepsTLS(t *testing.T) {
	w := servertest.Start(t, servertest.Config{
		MinRetry:   time.Minute,
		TLS:        servertest.SelfSigned(t, "mx.test"),
		BackendTLS: &tls.Config{InsecureSkipVerify: true},
	})
	w.Backend.OfferTLS(servertest.SelfSigned(t, "backend.test"))

	c, br := serve(t, w, w.Dialer, "127.0.6.1")
	tlsSession(t, c, br, false)
	w.Clock.Advance(2 * time.Minute)

	c, br = serve(t, w, offLoopback{w.Dialer}, "127.0.6.1")
	tlsSession(t, c, br, true)
	c, br = serve(t, w, w.Dialer, "127.0.6.1")
	tlsSession(t, c, br, true)

	conns := w.Backend.Conns()
	if len(conns) != 2 || len(w.Backend.Messages()) != 2 {
		t.Fatalf("backend: %d connections, %d messages; want 2 and 2", len(conns), len(w.Backend.Messages()))
	}
	if c := conns[0]; !c.InTLS || c.TLS == "" {
		t.Errorf("backend off loopback: TLS with moat %v, client's TLS in the PROXY header %q; want both", c.InTLS, c.TLS)
	}
	if c := conns[1]; c.InTLS || c.TLS == "" {
		t.Errorf("backend on loopback: TLS with moat %v, client's TLS in the PROXY header %q; want only the header", c.InTLS, c.TLS)
	}
	if got := conns[0].Lines; len(got) < 3 || got[0] != "EHLO c" || got[1] != "STARTTLS" || got[2] != "EHLO c" {
		t.Errorf("backend off loopback got %q, want EHLO, STARTTLS, EHLO first", got)
	}
}

// A client in the clear is handed off in the clear, and the PROXY header
// says nothing of TLS.
func TestHandOffPlain(t *testing.T) {
	w := servertest.Start(t, servertest.Config{MinRetry: time.Minute, BackendTLS: &tls.Config{InsecureSkipVerify: true}})
	w.Backend.OfferTLS(servertest.SelfSigned(t, "backend.test"))
	for i := range 2 {
		c, br := serve(t, w, offLoopback{w.Dialer}, "127.0.7.1")
		cl := &client{t: t, c: c, br: br}
		cl.expect("", "220 ")
		cl.expect("EHLO c", "250 ")
		cl.expect("MAIL FROM:<s@sender.example>", "250 2.1.0")
		if i == 0 {
			cl.expect("RCPT TO:<alice@example.test>", "451 4.7.1")
			w.Clock.Advance(2 * time.Minute)
			continue
		}
		cl.expect("RCPT TO:<alice@example.test>", "250 2.1.5")
		cl.expect("QUIT", "221")
	}
	if conns := w.Backend.Conns(); len(conns) != 1 || conns[0].InTLS || conns[0].TLS != "" {
		t.Errorf("backend connections %+v, want one in the clear with no TLS in the header", conns)
	}
}
