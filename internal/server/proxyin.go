package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pires/go-proxyproto"

	"moat/internal/dialog"
)

var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// readProxyHeader reads a PROXY v1 or v2 header from a trusted load
// balancer, byte-exactly: nothing after the header is consumed, so the
// connection stays a plain socket that the tarpit can hold and splice(2)
// can copy from.
func readProxyHeader(c net.Conn, timeout time.Duration) (dialog.Peer, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	p, local, err := parseProxyHeader(c)
	if err != nil {
		return dialog.Peer{}, err
	}
	if local {
		// A health check of the load balancer itself.
		a := clientAddr(c)
		return dialog.Peer{Client: a, Remote: c.RemoteAddr(), Local: c.LocalAddr()}, nil
	}
	return p, nil
}

// parseProxyHeader reads one header from c without reading past it. local
// reports a LOCAL command (no client addresses).
func parseProxyHeader(c io.Reader) (p dialog.Peer, local bool, err error) {
	head := make([]byte, 12)
	if _, err := io.ReadFull(c, head); err != nil {
		return dialog.Peer{}, false, err
	}
	var raw []byte
	switch {
	case bytes.Equal(head, v2Signature):
		more := make([]byte, 4)
		if _, err := io.ReadFull(c, more); err != nil {
			return dialog.Peer{}, false, err
		}
		n := int(more[2])<<8 | int(more[3])
		if n > 512 {
			return dialog.Peer{}, false, fmt.Errorf("PROXY v2 header of %d bytes", n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c, body); err != nil {
			return dialog.Peer{}, false, err
		}
		raw = append(append(head, more...), body...)
	case bytes.HasPrefix(head, []byte("PROXY ")):
		raw = head
		one := make([]byte, 1)
		for !bytes.HasSuffix(raw, []byte("\r\n")) {
			if len(raw) > 107 { // the longest v1 header
				return dialog.Peer{}, false, errors.New("PROXY v1 header too long")
			}
			if _, err := io.ReadFull(c, one); err != nil {
				return dialog.Peer{}, false, err
			}
			raw = append(raw, one[0])
		}
	default:
		return dialog.Peer{}, false, errors.New("no PROXY header")
	}
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return dialog.Peer{}, false, err
	}
	if h.Command.IsLocal() {
		return dialog.Peer{}, true, nil
	}
	src, dst, ok := h.TCPAddrs()
	if !ok {
		return dialog.Peer{}, false, errors.New("PROXY header without TCP addresses")
	}
	ap := src.AddrPort()
	return dialog.Peer{Client: ap.Addr().Unmap(), Remote: src, Local: dst}, false, nil
}
