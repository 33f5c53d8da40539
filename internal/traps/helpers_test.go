package traps

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"moat/internal/clock"
	"moat/internal/relay"
	"moat/internal/store"
	"moat/internal/store/bolt"
)

var t0 = time.Date(2026, 3, 3, 6, 0, 0, 0, time.UTC)

func newStore(t *testing.T, c clock.Clock) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newTrapSet(t *testing.T, st store.Store, configured ...string) *Set {
	t.Helper()
	s, err := New(st, configured)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func defaultMatcher(t *testing.T) *LineMatcher {
	t.Helper()
	m, err := NewLineMatcher("")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mailServer is a stand-in backend for probes: it knows some mailboxes
// (250), answers 451 for addresses that start with "busy", 552 5.2.2 for
// "full…", 550 5.7.1 for "policy…" and 550 5.1.1 for every other one. It reads the PROXY header like a real backend and
// records the client address it names.
type mailServer struct {
	ln      net.Listener
	known   map[string]bool
	mu      sync.Mutex
	rcpts   []string
	proxied []string
}

func startMailServer(t *testing.T, known ...string) *mailServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &mailServer{ln: &proxyproto.Listener{Listener: ln}, known: map[string]bool{}}
	for _, k := range known {
		s.known[k] = true
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *mailServer) prober() *Prober {
	return &Prober{Dialer: &relay.Dialer{Addr: s.ln.Addr().String(), Proxy: "v2"}, Hostname: "mx.test", Timeout: 10 * time.Second}
}

func (s *mailServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "220 backend.test ESMTP\r\n")
	s.mu.Lock()
	s.proxied = append(s.proxied, c.RemoteAddr().String())
	s.mu.Unlock()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			fmt.Fprintf(c, "250-backend.test\r\n250 PIPELINING\r\n")
		case "MAIL":
			fmt.Fprintf(c, "250 2.1.0 Ok\r\n")
		case "RCPT":
			addr := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(arg, "TO:<"), ">"))
			s.mu.Lock()
			s.rcpts = append(s.rcpts, addr)
			s.mu.Unlock()
			switch {
			case s.known[addr]:
				fmt.Fprintf(c, "250 2.1.5 Ok\r\n")
			case strings.HasPrefix(addr, "busy"):
				fmt.Fprintf(c, "451 4.3.0 <%s>: Temporary lookup failure\r\n", addr)
			case strings.HasPrefix(addr, "full"):
				fmt.Fprintf(c, "552 5.2.2 <%s>: Recipient address rejected: Mailbox full\r\n", addr)
			case strings.HasPrefix(addr, "policy"):
				fmt.Fprintf(c, "550 5.7.1 <%s>: Recipient address rejected: Access denied\r\n", addr)
			default:
				fmt.Fprintf(c, "550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox table\r\n", addr)
			}
		case "QUIT":
			fmt.Fprintf(c, "221 2.0.0 Bye\r\n")
			return
		default:
			fmt.Fprintf(c, "502 5.5.2 Error: command not recognized\r\n")
		}
	}
}

func (s *mailServer) probed() (rcpts, proxied []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rcpts...), append([]string(nil), s.proxied...)
}
