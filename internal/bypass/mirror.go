package bypass

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/prefix"
	"moat/internal/smtp"
	"moat/internal/store"
)

// Mirror keeps a Table in step with what an engine classifies white.
//
// Changes reach it three ways: the engine tells it of every host entry it
// writes or forgets (Changed, on the writer's path, so a host that turns
// black has left the set when the write returns); a shared store tells it
// of the entries other moats change (store.Watcher); and a full Sync every
// Interval catches what neither says — an entry expired, imported or
// covered by a reloaded network list, a table deleted by hand.
type Mirror struct {
	Table    *Table
	Eng      *classify.Engine
	Clock    clock.Clock   // the engine's: white times end by it
	Interval time.Duration // between full syncs; default 10m
	Log      *slog.Logger

	resync chan struct{}
}

// NewMirror returns a Mirror of eng, whose clock is clk, in t.
func NewMirror(t *Table, eng *classify.Engine, clk clock.Clock, log *slog.Logger) *Mirror {
	if log == nil {
		log = slog.Default()
	}
	return &Mirror{Table: t, Eng: eng, Clock: clk, Log: log, resync: make(chan struct{}, 1)}
}

// Start syncs the table with the engine once, then hooks the mirror to
// the engine's changes and, for a shared store, to other moats' changes.
// It returns the first sync's error: moat goes on without a bypass then
// (every host reaches moat, which knows what to do), and Run tries again.
func (m *Mirror) Start() error {
	m.Eng.OnChange(m.Changed)
	if w, ok := m.Eng.Store().(store.Watcher); ok {
		w.WatchHosts(m.Changed)
	}
	return m.Sync()
}

// Run syncs every Interval, and at once when a change could not be
// applied, until ctx is done. The table is left in the kernel: white hosts
// keep bypassing moat while it is down.
func (m *Mirror) Run(ctx context.Context) {
	iv := m.Interval
	if iv <= 0 {
		iv = 10 * time.Minute
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.Eng.OnChange(nil)
			if w, ok := m.Eng.Store().(store.Watcher); ok {
				w.WatchHosts(nil)
			}
			return
		case <-t.C:
		case <-m.resync:
		}
		if err := m.Sync(); err != nil {
			m.Log.Warn("bypass: sync", "table", m.Table.Name(), "err", err.Error())
		}
	}
}

// Sync makes the table hold exactly what the engine classifies white.
func (m *Mirror) Sync() error {
	white, err := m.Eng.White()
	if err != nil {
		return err
	}
	now := m.Clock.Now()
	want := make([]Element, 0, len(white))
	for _, w := range white {
		e := Element{Prefix: w.Prefix}
		if !w.Until.IsZero() {
			if e.Timeout = w.Until.Sub(now); e.Timeout <= 0 {
				continue
			}
		}
		want = append(want, e)
	}
	return m.Table.Sync(want)
}

// Changed brings p's element, and those of the white networks holding
// it, in step with the engine. The zero Prefix asks for a full sync.
func (m *Mirror) Changed(p netip.Prefix) {
	if !p.IsValid() {
		m.later()
		return
	}
	p = prefix.Norm(p)
	// The networks that hold p may change with it: those in the set (a
	// host in one turned black), and the most specific one stored (a
	// black host in it was forgotten). A white p cannot take a network
	// out of the set, so those are asked only when p is not white (each
	// costs a pass over the store). Networks nested deeper wait for the
	// next sync.
	var nets []netip.Prefix
	if !m.apply(p) {
		nets = m.Table.Nets()
	}
	if h, ok, err := m.Eng.Store().Lookup(p.Addr()); err == nil && ok && h.Prefix.Bits() < p.Bits() {
		nets = append(nets, h.Prefix)
	}
	done := map[netip.Prefix]bool{p: true}
	for _, n := range nets {
		if !done[n] && n.Bits() < p.Bits() && n.Contains(p.Addr()) {
			done[n] = true
			m.apply(n)
		}
	}
}

// apply puts p in the set or takes it out, as the engine classifies it
// now, and reports whether p is white.
func (m *Mirror) apply(p netip.Prefix) bool {
	until, white, err := m.Eng.WhiteUntil(p)
	if err != nil {
		// The store cannot say: leave the kernel as it is (a white
		// host stays white while moat cannot ask) and sync later.
		m.Log.Warn("bypass: reading class", "prefix", p.String(), "err", err.Error())
		m.later()
		return false
	}
	if white {
		e := Element{Prefix: p}
		if !until.IsZero() {
			if e.Timeout = until.Sub(m.Clock.Now()); e.Timeout <= 0 {
				white = false
			}
		}
		if white {
			if err = m.Table.Put(e); err == nil {
				return true
			}
		}
	}
	if !white {
		err = m.Table.Remove(p)
	}
	if err != nil {
		m.Log.Warn("bypass: kernel set", "prefix", p.String(), "err", err.Error())
		m.later()
	}
	return white
}

// later asks Run for a full sync.
func (m *Mirror) later() {
	select {
	case m.resync <- struct{}{}:
	default:
	}
}

// LogLine weighs one line of the mail server's log (ParsePostfixLine): a
// trap a client named is evidence against it (classify.TrapLogged), and a
// message from a white host renews its white time, as a session through
// moat would (classify.Seen), and so its element's timeout.
func (m *Mirror) LogLine(line string) {
	r, ok := ParsePostfixLine(line)
	if !ok {
		return
	}
	if r.Rcpt == "" {
		if v, err := m.Eng.Classify(r.Client); err == nil {
			if err := m.Eng.Seen(r.Client, v); err != nil {
				m.Log.Warn("bypass: renewing a white host", "client", r.Client.String(), "err", err.Error())
			}
		}
		return
	}
	rcpt, err := smtp.Normalize(r.Rcpt)
	if err != nil {
		return
	}
	d, err := m.Eng.TrapLogged(r.Client, rcpt)
	if err != nil {
		m.Log.Warn("bypass: trap in the mail log", "client", r.Client.String(), "trap", rcpt, "err", err.Error())
	}
	if d.Action == classify.Trap || d.Action == classify.Refuse {
		m.Log.Info("bypass: trap named to the mail server", "client", r.Client.String(), "trap", rcpt,
			"action", d.Action.String(), "reason", d.Reason)
	}
}
