package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// The PROXY header tells the backend whether the client spoke TLS with
// moat, with which version and cipher (PP2_TYPE_SSL); a v1 header has no
// room for it and carries the addresses alone.
func TestDialTLSHeader(t *testing.T) {
	st := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
	local := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 25), Port: 25}
	for _, tc := range []struct {
		proxy string
		st    *tls.ConnectionState
		ssl   bool
	}{
		{"v2", st, true},
		{"v2", nil, false},
		{"v1", st, false},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *proxyproto.Header, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- nil
				return
			}
			defer c.Close()
			h, _ := proxyproto.Read(bufio.NewReader(c))
			got <- h
		}()
		d := &Dialer{Addr: ln.Addr().String(), Proxy: tc.proxy}
		c, err := d.DialTLS(context.Background(), remote, local, tc.st)
		if err != nil {
			t.Fatal(err)
		}
		h := <-got
		c.Close()
		ln.Close()
		if h == nil || h.SourceAddr.String() != remote.String() {
			t.Fatalf("%s: header %+v, want one from %s", tc.proxy, h, remote)
		}
		tlvs, _ := h.TLVs()
		ssl, ok := tlvparse.FindSSL(tlvs)
		if ok != tc.ssl {
			t.Fatalf("%s, TLS %v: PP2_TYPE_SSL present %v, want %v", tc.proxy, tc.st != nil, ok, tc.ssl)
		}
		if !ok {
			continue
		}
		v, _ := ssl.SSLVersion()
		cipher, _ := ssl.SSLCipher()
		if !ssl.ClientSSL() || v != "TLSv1.3" || cipher != "TLS_AES_128_GCM_SHA256" || ssl.Verified() {
			t.Errorf("PP2_TYPE_SSL: client SSL %v, version %q, cipher %q, verified %v", ssl.ClientSSL(), v, cipher, ssl.Verified())
		}
	}
}
