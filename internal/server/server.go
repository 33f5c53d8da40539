// Package server owns the listener: it accepts connections, enforces the
// connection limits, asks classify for each host's class and dispatches the
// connection to the splice (white), the grey dialog or the tarpit (black).
// It writes one log line per session and shuts down gracefully.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/classify"
	"moat/internal/dialog"
	"moat/internal/ledger"
	"moat/internal/relay"
	"moat/internal/store"
	"moat/internal/tarpit"
)

// Config holds what the server needs beyond its parts.
type Config struct {
	Hostname      string
	MaxConns      int // all connections, tarpit included
	MaxConnsPerIP int
	ShutdownGrace time.Duration // how long sessions may finish after a stop; default 30s
	// TrustedProxies are load balancers whose PROXY header (v1 or v2)
	// names the real client. Nobody else's is believed.
	TrustedProxies []netip.Prefix
}

// Hooks hear of every session when it ends, for the metrics; nil funcs are
// skipped. They run on the session's goroutine (the tarpit's for Black)
// and must not block. Unlike Config they stay the same for the server's
// life (a reload replaces the Config, not what is counted).
type Hooks struct {
	// White: a white host's session; spliced false when the backend
	// could not be reached.
	White func(spliced bool)
	// Grey: a grey host's session, as it is logged, also when it moved
	// on to the tarpit (res.Tarpitted).
	Grey func(client netip.Addr, res dialog.Result)
	// Black: the tarpit let a connection go.
	Black func(held time.Duration)
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	Connections int64            `json:"connections"` // open now, tarpit included
	Open        map[string]int64 `json:"open"`        // open now by class; black: held by the tarpit
	Sessions    map[string]int64 `json:"sessions"`    // finished sessions by class
	Refused     map[string]int64 `json:"refused"`     // connections closed at once, by cause
	Tarpit      tarpit.Stats     `json:"tarpit"`
	StoreErrors int64            `json:"store_errors"`
	// Observe: the sessions that start now are in observe mode. Would
	// counts observed sessions since start by what enforce mode would
	// have done ("greylisted", "tarpit (trap)", …).
	Observe bool             `json:"observe"`
	Would   map[string]int64 `json:"would,omitempty"`
}

// Server dispatches connections by class.
type Server struct {
	conf   atomic.Pointer[Config] // replaced whole by SetConfig
	eng    *classify.Engine
	tp     *tarpit.Tarpit
	dialer *relay.Dialer
	dcfg   atomic.Pointer[dialog.Config] // replaced whole by SetDialog
	log    *slog.Logger
	hooks  Hooks // set by SetHooks before Serve

	conns       atomic.Int64
	mu          sync.Mutex
	perIP       map[netip.Addr]int
	sessions    [3]atomic.Int64
	open        [3]atomic.Int64 // white and grey sessions being served; black is the tarpit's Held
	refusedCap  atomic.Int64
	refusedIP   atomic.Int64
	refusedTP   atomic.Int64
	storeErrors atomic.Int64
	lastFullLog atomic.Int64 // unix seconds of the last "tarpit full" log line
	wg          sync.WaitGroup

	ledger *ledger.Ledger   // what black hosts were told; nil: not recorded
	would  map[string]int64 // guarded by mu
}

// New returns a Server. It has no tarpit until SetTarpit gives it one.
func New(cfg Config, eng *classify.Engine, dialer *relay.Dialer, dcfg *dialog.Config, log *slog.Logger) *Server {
	s := &Server{eng: eng, dialer: dialer, log: log, perIP: map[netip.Addr]int{}, would: map[string]int64{}}
	s.SetConfig(cfg)
	s.SetDialog(dcfg)
	return s
}

// SetConfig replaces the server's limits and trusted proxies (a reload).
// Open connections keep their slots: a lower cap refuses new ones until
// enough have ended.
func (s *Server) SetConfig(cfg Config) {
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 30 * time.Second
	}
	s.conf.Store(&cfg)
}

// SetDialog replaces what grey sessions are given (a reload). A session
// keeps the one it started with until it ends.
func (s *Server) SetDialog(dcfg *dialog.Config) { s.dcfg.Store(dcfg) }

func (s *Server) cfg() *Config { return s.conf.Load() }

// SetHooks gives the server its hooks, before Serve.
func (s *Server) SetHooks(h Hooks) { s.hooks = h }

// SetTarpit gives the server its tarpit, before Serve. The tarpit's events
// must be the server's (TarpitEvents): its Done releases a held
// connection's slot and counts its session, which nothing else does.
func (s *Server) SetTarpit(tp *tarpit.Tarpit) { s.tp = tp }

// SetLedger gives the server the ledger that records what black hosts'
// messages were told, before Serve.
func (s *Server) SetLedger(l *ledger.Ledger) { s.ledger = l }

// TarpitEvents are the tarpit's events as the server handles them: the
// ledger hears of every transaction and what its message was told, a
// relay attempt is weighed by classify, and Done ends the session.
func (s *Server) TarpitEvents() tarpit.Events {
	return tarpit.Events{
		Held:  s.tarpitHeld,
		Mail:  s.tarpitMail,
		Rcpt:  s.tarpitRcpt,
		Relay: s.tarpitRelay,
		Told:  s.tarpitTold,
		Done:  s.TarpitDone,
	}
}

func (s *Server) tarpitHeld(c tarpit.Conn, _ netip.Addr, st tarpit.Start) {
	if s.ledger != nil && st.InMail {
		s.ledger.Moved(c, st.Sender, st.Recipients)
	}
}

func (s *Server) tarpitMail(c tarpit.Conn, _ netip.Addr, sender string) {
	if s.ledger != nil {
		s.ledger.Mail(c, sender)
	}
}

func (s *Server) tarpitRcpt(c tarpit.Conn, _ netip.Addr, rcpt string) {
	if s.ledger != nil {
		s.ledger.Rcpt(c, rcpt)
	}
}

// tarpitTold is a message's end in the tarpit.
func (s *Server) tarpitTold(c tarpit.Conn, _ netip.Addr, f tarpit.Final) {
	if s.ledger == nil {
		return
	}
	told := ledger.Dropped
	switch f {
	case tarpit.Defer:
		told = ledger.Deferred
	case tarpit.Reject:
		told = ledger.Refused
	}
	s.ledger.Told(c, told)
}

// tarpitRelay is a relay attempt from a host black for a weaker reason:
// proof that it is a bot, weighed by classify (an operator's entry
// stands). The store write happens elsewhere: the tarpit holds a lock.
func (s *Server) tarpitRelay(_ tarpit.Conn, client netip.Addr, rcpt string) {
	go func() {
		if err := s.eng.Relay(client, rcpt); err != nil {
			s.storeErrors.Add(1)
		}
	}()
}

// TarpitDone is the tarpit's Done event: it logs the black session, gives
// the ledger its held time and what its messages were told, and releases
// its connection slot.
func (s *Server) TarpitDone(c tarpit.Conn, client netip.Addr, held time.Duration, bytesIn int64, msgs int) {
	s.release(client)
	s.sessions[store.Black].Add(1)
	if s.hooks.Black != nil {
		s.hooks.Black(held)
	}
	s.log.Info("session", "client", client.String(), "class", "black", "verdict", "tarpit",
		"held", held.Round(time.Millisecond).String(), "bytes_in", bytesIn, "messages", msgs)
	if s.ledger == nil {
		return
	}
	// The tarpit calls this with a connection locked: the store writes
	// (a network round trip with Redis) happen elsewhere.
	go func() {
		if err := s.ledger.Held(client, held); err != nil {
			s.storeErrors.Add(1)
		}
		if err := s.ledger.Record(c, client); err != nil {
			s.storeErrors.Add(1)
		}
	}()
}

// HeldNow returns the tarpit seconds spent so far on connections that are
// still held (the store counts only those that ended).
func (s *Server) HeldNow() float64 {
	if s.tp == nil {
		return 0
	}
	return s.tp.Stats().HeldNow
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Connections: s.conns.Load(),
		Sessions:    map[string]int64{},
		Open:        map[string]int64{},
		Refused: map[string]int64{
			"max_conns":        s.refusedCap.Load(),
			"max_conns_per_ip": s.refusedIP.Load(),
			"tarpit_full":      s.refusedTP.Load(),
		},
		StoreErrors: s.storeErrors.Load(),
	}
	for c := store.Grey; c <= store.Black; c++ {
		st.Sessions[c.String()] = s.sessions[c].Load()
		st.Open[c.String()] = s.open[c].Load()
	}
	st.Observe = s.dcfg.Load().Observe
	s.mu.Lock()
	if len(s.would) > 0 {
		st.Would = maps.Clone(s.would)
	}
	s.mu.Unlock()
	if s.tp != nil {
		st.Tarpit = s.tp.Stats()
		st.Open[store.Black.String()] = int64(st.Tarpit.Held)
	}
	return st
}

// Serve accepts connections on ln until ctx is done, then stops accepting,
// gives open sessions ShutdownGrace to end, and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors or similar: back off
				// as net/http does, and keep serving.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				s.log.Warn("accept", "err", err.Error(), "retry_in", delay.String())
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("server: accept: %w", err)
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, c)
		}()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg().ShutdownGrace):
		s.log.Warn("shutdown: sessions still open after grace period, closing them")
	}
	return nil
}

func isTemporary(err error) bool {
	type temporary interface{ Temporary() bool }
	var t temporary
	return errors.As(err, &t) && t.Temporary()
}

// acquire takes a connection slot for client, or says why not.
func (s *Server) acquire(client netip.Addr) string {
	if n := s.conns.Add(1); n > int64(s.cfg().MaxConns) {
		s.conns.Add(-1)
		s.refusedCap.Add(1)
		return "max_conns"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perIP[client] >= s.cfg().MaxConnsPerIP {
		s.conns.Add(-1)
		s.refusedIP.Add(1)
		return "max_conns_per_ip"
	}
	s.perIP[client]++
	return ""
}

func (s *Server) release(client netip.Addr) {
	s.conns.Add(-1)
	s.mu.Lock()
	if s.perIP[client]--; s.perIP[client] <= 0 {
		delete(s.perIP, client)
	}
	s.mu.Unlock()
}

func clientAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) handle(ctx context.Context, c net.Conn) {
	client := clientAddr(c)
	peer := dialog.Peer{Client: client, Remote: c.RemoteAddr(), Local: c.LocalAddr()}
	if s.trusted(client) {
		p, err := readProxyHeader(c, 10*time.Second)
		if err != nil {
			c.Close()
			s.log.Warn("session", "client", client.String(), "verdict", "protocol-violation",
				"reason", "bad PROXY header from trusted proxy: "+err.Error())
			return
		}
		peer = p
		client = p.Client
	}
	if why := s.acquire(client); why != "" {
		// Closing at once costs nothing; a 421 would cost a write
		// to a host that is probably a bot flooding us.
		c.Close()
		s.log.Debug("refused", "client", client.String(), "cause", why)
		return
	}
	start := time.Now()
	v, err := s.eng.Classify(client)
	if err != nil {
		s.storeErrors.Add(1)
	}
	// A session keeps the dialog's configuration it started with; in its
	// observe mode black hosts meet the dialog rather than the tarpit,
	// and every session's log line says what enforce mode would have done.
	dcfg := s.dcfg.Load()
	switch {
	case v.Class == store.White:
		s.open[store.White].Add(1)
		s.splice(ctx, c, peer, v, start, dcfg.Observe)
		s.open[store.White].Add(-1)
		s.release(client)
	case v.Class == store.Black && !dcfg.Observe:
		if s.tp.Hold(c, client, tarpit.Start{Source: v.Source}) {
			return // released by TarpitDone
		}
		s.release(client)
		s.tarpitFull(client)
	default:
		peer.Listed = s.eng.Lookup(client, v) // DNS lists, answered within the greet delay
		peer.Verdict = v
		// The dialog's sessions, a black host's in observe mode too (open
		// black connections are the tarpit's).
		s.open[store.Grey].Add(1)
		res := dialog.Serve(ctx, c, peer, dcfg, s.eng, s.tp, s.dialer)
		s.open[store.Grey].Add(-1)
		s.sessions[v.Class].Add(1)
		if s.hooks.Grey != nil {
			s.hooks.Grey(client, res)
		}
		if res.Tarpitted {
			s.log.Info("session", "client", client.String(), "class", "grey", "verdict", res.Verdict.String(),
				"reason", res.Reason, "helo", res.Helo, "duration", time.Since(start).Round(time.Millisecond).String(),
				"bytes_in", res.BytesIn, "bytes_out", res.BytesOut, "next", "tarpit")
			return // released by TarpitDone
		}
		s.release(client)
		if res.TarpitFull {
			s.tarpitFull(client)
		}
		attrs := []any{"client", client.String(), "class", v.Class.String(), "verdict", res.Verdict.String(),
			"reason", res.Reason, "helo", res.Helo, "sender", res.Sender, "rcpts", res.Rcpts,
			"deferred", res.Deferred, "messages", res.Messages, "tls", res.TLS,
			"duration", time.Since(start).Round(time.Millisecond).String(),
			"bytes_in", res.BytesIn, "bytes_out", res.BytesOut}
		if dcfg.Observe {
			attrs = append(attrs, s.observed(res.Would(), res.WouldReason)...)
		}
		if err != nil {
			attrs = append(attrs, "store_error", err.Error())
		}
		s.log.Info("session", attrs...)
	}
}

// observed counts an observed session by what enforce mode would have
// done with it, and returns the log attributes that say so.
func (s *Server) observed(would, reason string) []any {
	s.mu.Lock()
	s.would[would]++
	s.mu.Unlock()
	if reason == "" {
		return []any{"would", would}
	}
	return []any{"would", would, "would_reason", reason}
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg().TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// tarpitFull notes a black connection that the tarpit had no room for; the
// log line is written at most once a minute so a flood cannot fill the log.
func (s *Server) tarpitFull(client netip.Addr) {
	s.refusedTP.Add(1)
	now := time.Now().Unix()
	last := s.lastFullLog.Load()
	if now-last >= 60 && s.lastFullLog.CompareAndSwap(last, now) {
		s.log.Warn("tarpit full: closing new black connections at once; white and grey hosts are still served",
			"client", client.String(), "held", s.tp.Stats().Held, "refused_total", s.refusedTP.Load())
	}
}

func (s *Server) splice(ctx context.Context, c net.Conn, peer dialog.Peer, v classify.Verdict, start time.Time, observe bool) {
	client := peer.Client
	if err := s.eng.Seen(client, v); err != nil {
		s.storeErrors.Add(1)
	}
	be, err := s.dialer.Dial(ctx, peer.Remote, peer.Local)
	if err != nil {
		// The client keeps its mail and retries later.
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "421 4.4.1 %s Service not available, try again later\r\n", s.cfg().Hostname)
		c.Close()
		s.sessions[store.White].Add(1)
		if s.hooks.White != nil {
			s.hooks.White(false)
		}
		s.log.Warn("session", "client", client.String(), "class", "white", "verdict", "backend-unavailable",
			"reason", v.Reason, "err", err.Error())
		return
	}
	up, down := relay.Splice(c, be)
	s.sessions[store.White].Add(1)
	if s.hooks.White != nil {
		s.hooks.White(true)
	}
	attrs := []any{"client", client.String(), "class", "white", "verdict", "spliced", "reason", v.Reason,
		"duration", time.Since(start).Round(time.Millisecond).String(), "bytes_in", up, "bytes_out", down}
	if observe {
		attrs = append(attrs, s.observed("spliced", "")...)
	}
	s.log.Info("session", attrs...)
}
