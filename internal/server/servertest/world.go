package servertest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/dialog"
	"moat/internal/greylist"
	"moat/internal/ledger"
	"moat/internal/prefix"
	"moat/internal/relay"
	"moat/internal/server"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/tarpit"
	"moat/internal/tlstest"
	"moat/internal/traps"
)

// Config shapes a World; zero fields take the defaults noted.
type Config struct {
	GreetDelay time.Duration
	MinRetry   time.Duration
	Traps      []string
	Blacklist  []string       // prefixes, "127.0.0.66/32"
	Listen     string         // default 127.0.0.1:0
	Trusted    []netip.Prefix // trusted load balancers
	TarpitMax  int            // default 50
	TLS        *tls.Config    // STARTTLS for clients
	BackendTLS *tls.Config    // STARTTLS to the backend
	MaxRcpts   int            // default 10
	MaxErrors  int            // default 10
	MaxSize    int64          // max_message_size, default 1 MiB
	Stutter    time.Duration  // default 1ms
	// DataTimeout and DataDoneTimeout bound a message's reads and the
	// backend's reply after it; default 10s each.
	DataTimeout, DataDoneTimeout time.Duration
	MinDataRate                  int64    // bytes per second a message must average; 0: none
	Observe                      bool     // mode = "observe"
	Domains                      []string // our domains: a recipient elsewhere is a relay attempt in the tarpit
}

// World is a running server with a fake clock, a real store and a
// recording backend.
type World struct {
	Clock   *clock.Fake
	Store   store.Store
	Eng     *classify.Engine
	Srv     *server.Server
	Tarpit  *tarpit.Tarpit
	Words   *smtp.Words
	Dialog  *dialog.Config
	Dialer  *relay.Dialer
	Addr    string // where the server listens
	Backend *Backend
	Ledger  *ledger.Ledger
	Log     *LogBuffer // the server's log lines, as JSON
	t       testing.TB
}

// Start starts a World; it stops with the test.
func Start(t testing.TB, wc Config) *World {
	t.Helper()
	w := &World{t: t, Clock: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: w.Clock})
	if err != nil {
		t.Fatal(err)
	}
	w.Store = st
	ts, err := traps.New(st, wc.Traps)
	if err != nil {
		t.Fatal(err)
	}
	var black []netip.Prefix
	for _, b := range wc.Blacklist {
		p, err := prefix.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		black = append(black, p)
	}
	g := greylist.New(greylist.Config{MinRetry: wc.MinRetry, RetryWindow: 24 * time.Hour, PassTTL: 864 * time.Hour}, st, w.Clock)
	w.Eng = classify.New(classify.Config{Blacklist: black, BlackTTL: 24 * time.Hour, WhiteTTL: 864 * time.Hour, GreyTTL: 24 * time.Hour}, st, w.Clock, g, ts)
	w.Backend = StartBackend(t)
	maxSize := cmp.Or(wc.MaxSize, 1<<20)
	w.Words = smtp.NewWords("mx.test", wc.GreetDelay > 0, wc.TLS != nil, maxSize)
	w.Dialog = &dialog.Config{
		Words: w.Words, GreetDelay: wc.GreetDelay, MaxRcpts: cmp.Or(wc.MaxRcpts, 10), MaxCommands: 100,
		MaxErrors: cmp.Or(wc.MaxErrors, 10), MaxMessageSize: maxSize, IdleTimeout: 10 * time.Second,
		DataTimeout: cmp.Or(wc.DataTimeout, 10*time.Second), DataDoneTimeout: cmp.Or(wc.DataDoneTimeout, 10*time.Second),
		MinDataRate:    wc.MinDataRate,
		BackendTimeout: 10 * time.Second,
		TLS:            wc.TLS, BackendTLS: wc.BackendTLS,
		Observe: wc.Observe,
	}
	if len(wc.Domains) > 0 {
		w.Dialog.Ours = func(d string) bool { return slices.Contains(wc.Domains, strings.ToLower(strings.TrimSuffix(d, "."))) }
	}
	w.Log = &LogBuffer{}
	var out io.Writer = w.Log
	if testing.Verbose() {
		out = io.MultiWriter(w.Log, os.Stderr)
	}
	log := slog.New(slog.NewJSONHandler(out, nil))
	w.Dialer = &relay.Dialer{Addr: w.Backend.Addr(), Proxy: "v2"}
	tarpitMax := cmp.Or(wc.TarpitMax, 50)
	w.Srv = server.New(server.Config{Hostname: "mx.test", MaxConns: tarpitMax + 100, MaxConnsPerIP: 20, ShutdownGrace: time.Second, TrustedProxies: wc.Trusted},
		w.Eng, w.Dialer, w.Dialog, log)
	if w.Ledger, err = ledger.New(st, ledger.Config{Clock: w.Clock}); err != nil {
		t.Fatal(err)
	}
	w.Srv.SetLedger(w.Ledger)
	w.Tarpit, err = tarpit.New(tarpit.Config{Words: w.Words, Stutter: cmp.Or(wc.Stutter, time.Millisecond), MaxConns: tarpitMax,
		MaxErrors: w.Dialog.MaxErrors, MaxCommands: w.Dialog.MaxCommands, MaxRcpts: w.Dialog.MaxRcpts, Ours: w.Dialog.Ours},
		w.Srv.TarpitEvents())
	if err != nil {
		t.Fatal(err)
	}
	w.Srv.SetTarpit(w.Tarpit)
	ln, err := net.Listen("tcp", cmp.Or(wc.Listen, "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	w.Addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		w.Tarpit.Close()
		st.Close()
	})
	return w
}

// Dial connects to the server from client (an address on loopback).
func (w *World) Dial(client string) (net.Conn, *bufio.Reader) {
	w.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", w.Addr)
	if err != nil {
		w.t.Fatalf("connect from %s: %v", client, err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

// Class returns the stored class of addr ("none" when nothing is stored),
// waiting a moment for one other than want (a session that just ended
// may still be storing).
func (w *World) Class(addr netip.Addr, want string) string {
	w.t.Helper()
	got := ""
	for i := 0; i < 100; i++ {
		h, ok, err := w.Store.Lookup(addr)
		if err != nil {
			w.t.Fatal(err)
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
	return got
}

// SelfSigned returns a server TLS config with a fresh self-signed
// certificate for name.
func SelfSigned(t testing.TB, name string) *tls.Config {
	t.Helper()
	return &tls.Config{Certificates: []tls.Certificate{tlstest.Cert(t, name, time.Now().Add(time.Hour))}}
}

// LogBuffer collects log lines, for a test to read while a server or
// daemon writes them; safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Records returns the JSON log records written so far, decoded.
func (b *LogBuffer) Records() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var recs []map[string]any
	for _, l := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(l, &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs
}
