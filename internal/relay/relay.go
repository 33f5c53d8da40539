// Package relay connects clients to the real mail server.
//
// A Dialer opens a connection to the backend and writes a PROXY protocol
// header first, so the backend sees the real client address. Splice then
// copies bytes both ways without looking at them: a white host talks to the
// backend exactly as if moat were not there (STARTTLS included). Between two
// TCP connections on Linux io.Copy uses splice(2), so the bytes never enter
// user space.
//
// relay never decides who may pass: callers hand it only white hosts and
// grey sessions that the greylist has passed.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// Dialer opens connections to the backend.
type Dialer struct {
	Addr    string        // host:port of the real mail server
	Proxy   string        // "v2", "v1" or "none"
	Timeout time.Duration // connect timeout; default 10s
}

// Dial connects to the backend on behalf of the client whose connection
// arrived at local from remote, and writes the PROXY header.
func (d *Dialer) Dial(ctx context.Context, remote, local net.Addr) (net.Conn, error) {
	return d.DialTLS(ctx, remote, local, nil)
}

// DialTLS is Dial for a client that spoke TLS with moat (clientTLS is its
// state; nil for none): a v2 header then carries PP2_TYPE_SSL, so the
// backend learns that the client's mail came encrypted, with which version
// and cipher, although moat speaks to it in the clear or with its own TLS.
// A v1 header has no room for it.
func (d *Dialer) DialTLS(ctx context.Context, remote, local net.Addr, clientTLS *tls.ConnectionState) (net.Conn, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	nd := net.Dialer{Timeout: timeout}
	c, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("relay: backend %s: %w", d.Addr, err)
	}
	var version byte
	switch d.Proxy {
	case "v1":
		version = 1
	case "v2", "":
		version = 2
	}
	if version != 0 {
		h := proxyproto.HeaderProxyFromAddrs(version, tcpAddr(remote), tcpAddr(local))
		if clientTLS != nil && version == 2 {
			if err := h.SetTLVs([]proxyproto.TLV{sslTLV(clientTLS)}); err != nil {
				c.Close()
				return nil, fmt.Errorf("relay: backend %s: PROXY header: %w", d.Addr, err)
			}
		}
		c.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, fmt.Errorf("relay: backend %s: writing PROXY header: %w", d.Addr, err)
		}
		c.SetWriteDeadline(time.Time{})
	}
	return c, nil
}

// sslTLV describes the client's TLS as HAProxy does (PROXY protocol
// 2.2.5): the client used TLS, presented no certificate (so verify is
// non-zero), with this version and cipher.
func sslTLV(st *tls.ConnectionState) proxyproto.TLV {
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1, TLV: []proxyproto.TLV{
		{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tlsVersion(st.Version))},
		{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(tls.CipherSuiteName(st.CipherSuite))},
	}}
	if len(st.PeerCertificates) > 0 {
		ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN
	}
	t, _ := ssl.Marshal() // cannot fail: the sub-TLVs are short
	return t
}

// tlsVersion names a TLS version the way OpenSSL does, which is what the
// PROXY protocol's receivers expect ("TLSv1.3").
func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(v)
}

// tcpAddr makes sure the header carries plain IPv4 for IPv4 clients (a
// dual-stack listener reports them as IPv4-mapped IPv6), so the backend
// logs 192.0.2.1, not ::ffff:192.0.2.1.
func tcpAddr(a net.Addr) net.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
		return a
	}
	ap := ta.AddrPort()
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}

// Linger bounds how long one direction of a splice stays open after the
// other has ended, so a client that never closes cannot hold a backend
// connection forever.
const Linger = time.Minute

// Splice copies bytes between client and backend until both directions
// have ended, then closes both. It returns the bytes copied each way.
func Splice(client, backend net.Conn) (toBackend, toClient int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		toBackend, _ = io.Copy(backend, client)
		halfClose(backend, client)
	}()
	go func() {
		defer wg.Done()
		toClient, _ = io.Copy(client, backend)
		halfClose(client, backend)
	}()
	wg.Wait()
	client.Close()
	backend.Close()
	return toBackend, toClient
}

// halfClose tells dst that no more bytes come, and gives src a deadline to
// finish its own direction.
func halfClose(dst, src net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := dst.(closeWriter); ok {
		if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			dst.Close()
		}
	} else {
		dst.Close()
	}
	src.SetReadDeadline(time.Now().Add(Linger))
}
