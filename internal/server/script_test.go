package server

// Dialog scripts: each file in testdata/dialogs is a conversation with a
// running server, in the chasquid habit: a client line, the reply it
// expects, nothing else. Directives set up the world around it.
//
//	# comment
//	@greet_delay 200ms      greylist.greet_delay (before the first @connect)
//	@min_retry 1m           greylist.min_retry   (before the first @connect)
//	@trusted 127.0.0.50/32  a trusted load balancer (before the first @connect)
//	@listen [::1]:0         where the server listens  (before the first @connect)
//	@trap trap@example.test a trap address        (before the first @connect)
//	@blacklist 127.0.0.66/32                      (before the first @connect)
//	@client 127.0.0.10      source address of the next @connect
//	@advance 2m             move the fake clock
//	@connect                open a connection
//	C: EHLO x               send a line (CRLF added)
//	R: "EHLO x\r\nMAIL…"    send raw bytes (a Go string literal)
//	S: 250-                 read one reply line; it must start with this
//	@eof                    the server must close the connection
//	@close                  close our side
//	@class 127.0.0.10 white the store's class for that address now
//	@backend-messages 1     messages the backend received so far
//	@backend-conns 0        connections the backend received so far
//	@backend-banner 554 5.7.1 No   the backend greets with this and hangs up
//	@backend-from 127.0.0.10  the PROXY header of the last backend connection named this client

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/dialog"
	"moat/internal/greylist"
	"moat/internal/relay"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/tarpit"
	"moat/internal/traps"
)

// testBackend is a minimal SMTP server that records what reaches it. It is
// a stand-in for the real mail server in unit tests only; the end-to-end
// tests under test/ use a real Postfix.
type testBackend struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    int
	messages []string
	lastFrom string
	banner   string // "" for the usual 220
}

func startBackend(t *testing.T) *testBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{ln: &proxyproto.Listener{Listener: ln}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := b.ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *testBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	// Reading the first byte makes the proxyproto layer parse the header.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b.mu.Lock()
	b.conns++
	b.lastFrom = c.RemoteAddr().String()
	banner := b.banner
	b.mu.Unlock()
	if banner != "" {
		fmt.Fprintf(c, "%s\r\n", banner)
		return
	}
	fmt.Fprintf(c, "220 backend.test ESMTP\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO":
			fmt.Fprintf(c, "250-backend.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n")
		case "HELO", "MAIL", "RSET", "NOOP":
			fmt.Fprintf(c, "250 2.0.0 Ok\r\n")
		case "RCPT":
			if strings.Contains(strings.ToLower(line), "<unknown") {
				fmt.Fprintf(c, "550 5.1.1 <unknown>: Recipient address rejected: User unknown\r\n")
			} else {
				fmt.Fprintf(c, "250 2.1.5 Ok\r\n")
			}
		case "DATA":
			fmt.Fprintf(c, "354 End data with <CR><LF>.<CR><LF>\r\n")
			var msg strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(l)
			}
			b.mu.Lock()
			b.messages = append(b.messages, msg.String())
			b.mu.Unlock()
			fmt.Fprintf(c, "250 2.0.0 Ok: queued as TEST\r\n")
		case "QUIT":
			fmt.Fprintf(c, "221 2.0.0 Bye\r\n")
			return
		default:
			fmt.Fprintf(c, "502 5.5.2 Error: command not recognized\r\n")
		}
	}
}

func (b *testBackend) stats() (conns, msgs int, from string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conns, len(b.messages), b.lastFrom
}

// world is a running server with a fake clock and a real store.
type world struct {
	t       *testing.T
	clock   *clock.Fake
	st      store.Store
	eng     *classify.Engine
	srv     *Server
	addr    string
	backend *testBackend
	cancel  context.CancelFunc
	done    chan struct{}
}

type worldConfig struct {
	greetDelay time.Duration
	minRetry   time.Duration
	traps      []string
	blacklist  []string
	listen     string
	trusted    []netip.Prefix
	tarpitMax  int
	tls        *tls.Config
}

func startWorld(t *testing.T, wc worldConfig) *world {
	w := &world{t: t, clock: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: w.clock})
	if err != nil {
		t.Fatal(err)
	}
	w.st = st
	ts, err := traps.New(st, wc.traps)
	if err != nil {
		t.Fatal(err)
	}
	var black []netip.Prefix
	for _, b := range wc.blacklist {
		p, err := config.ParsePrefix(b)
		if err != nil {
			t.Fatal(err)
		}
		black = append(black, p)
	}
	g := greylist.New(greylist.Config{MinRetry: wc.minRetry, RetryWindow: 24 * time.Hour, PassTTL: 864 * time.Hour}, st, w.clock)
	w.eng = classify.New(classify.Config{Blacklist: black, BlackTTL: 24 * time.Hour, WhiteTTL: 864 * time.Hour, GreyTTL: 24 * time.Hour}, st, w.clock, g, ts)
	w.backend = startBackend(t)
	dcfg := &dialog.Config{
		Hostname: "mx.test", GreetDelay: wc.greetDelay, MaxRcpts: 10, MaxCommands: 100, MaxErrors: 10,
		MaxMessageSize: 1 << 20, IdleTimeout: 10 * time.Second, DataTimeout: 10 * time.Second, BackendTimeout: 10 * time.Second,
		TLS: wc.tls,
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	w.srv = New(Config{Hostname: "mx.test", MaxConns: wc.tarpitMax + 100, MaxConnsPerIP: 20, ShutdownGrace: time.Second, TrustedProxies: wc.trusted}, w.eng,
		&relay.Dialer{Addr: w.backend.ln.Addr().String(), Proxy: "v2"}, dcfg, log)
	if wc.tarpitMax == 0 {
		wc.tarpitMax = 50
	}
	tp, err := tarpit.New(tarpit.Config{Hostname: "mx.test", Stutter: time.Millisecond, MaxConns: wc.tarpitMax}, tarpit.Events{Done: w.srv.TarpitDone})
	if err != nil {
		t.Fatal(err)
	}
	w.srv.SetTarpit(tp)
	if wc.listen == "" {
		wc.listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", wc.listen)
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go func() { w.srv.Serve(ctx, ln); close(w.done) }()
	t.Cleanup(func() {
		cancel()
		<-w.done
		tp.Close()
		st.Close()
	})
	return w
}

func (w *world) dial(client string) (net.Conn, *bufio.Reader) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", w.addr)
	if err != nil {
		w.t.Fatalf("connect from %s: %v", client, err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

func mustAddr(t *testing.T, s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDialogScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/dialogs/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dialog scripts found: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScript(t, f)
		})
	}
}

func runScript(t *testing.T, path string) {
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var wc worldConfig
	var w *world
	client := "127.0.0.10"
	var conn net.Conn
	var br *bufio.Reader
	for n, raw := range strings.Split(string(text), "\n") {
		line := strings.TrimRight(raw, "\r")
		where := fmt.Sprintf("%s:%d", path, n+1)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		verb, arg, _ := strings.Cut(line, " ")
		needWorld := func() {
			if w == nil {
				w = startWorld(t, wc)
			}
		}
		switch verb {
		case "@greet_delay", "@min_retry":
			d, err := time.ParseDuration(arg)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if verb == "@greet_delay" {
				wc.greetDelay = d
			} else {
				wc.minRetry = d
			}
		case "@trusted":
			p, err := config.ParsePrefix(arg)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			wc.trusted = append(wc.trusted, p)
		case "@listen":
			wc.listen = arg
		case "@trap":
			wc.traps = append(wc.traps, arg)
		case "@blacklist":
			wc.blacklist = append(wc.blacklist, arg)
		case "@client":
			client = arg
		case "@advance":
			needWorld()
			d, err := time.ParseDuration(arg)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			w.clock.Advance(d)
		case "@connect":
			needWorld()
			conn, br = w.dial(client)
		case "@close":
			conn.Close()
		case "C:":
			if _, err := io.WriteString(conn, arg+"\r\n"); err != nil {
				t.Fatalf("%s: send: %v", where, err)
			}
		case "R:":
			s, err := strconv.Unquote(arg)
			if err != nil {
				t.Fatalf("%s: bad raw string: %v", where, err)
			}
			if _, err := io.WriteString(conn, s); err != nil {
				t.Fatalf("%s: send: %v", where, err)
			}
		case "S:":
			got, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: want a line starting %q, got %q and %v", where, arg, got, err)
			}
			if !strings.HasPrefix(got, arg) {
				t.Fatalf("%s: want a line starting %q, got %q", where, arg, got)
			}
		case "@eof":
			got, err := br.ReadString('\n')
			if err != io.EOF || got != "" {
				t.Fatalf("%s: want the server to close, got %q, %v", where, got, err)
			}
		case "@class":
			ip, want, _ := strings.Cut(arg, " ")
			p, _ := config.ParsePrefix(ip)
			// Give a session that just ended a moment to store.
			var got string
			for i := 0; i < 100; i++ {
				h, ok, err := w.st.Lookup(p.Addr())
				if err != nil {
					t.Fatal(err)
				}
				got = "none"
				if ok {
					got = h.Class.String()
				}
				if got == want {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if got != want {
				t.Fatalf("%s: class of %s: got %s, want %s", where, ip, got, want)
			}
		case "@backend-messages", "@backend-conns":
			want, _ := strconv.Atoi(arg)
			conns, msgs, _ := w.backend.stats()
			got := msgs
			if verb == "@backend-conns" {
				got = conns
			}
			if got != want {
				t.Fatalf("%s: %s: got %d, want %d", where, verb, got, want)
			}
		case "@backend-banner":
			needWorld()
			w.backend.mu.Lock()
			w.backend.banner = arg
			w.backend.mu.Unlock()
		case "@backend-from":
			_, _, from := w.backend.stats()
			if host, _, _ := net.SplitHostPort(from); host != arg {
				t.Fatalf("%s: backend saw client %q, want %s", where, from, arg)
			}
		default:
			t.Fatalf("%s: unknown script line %q", where, line)
		}
	}
}
