package bypass

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"moat/internal/classify"
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
	Interval time.Duration // between full syncs; default 10m
	Log      *slog.Logger

	resync chan struct{}
}

// NewMirror returns a Mirror of eng in t.
func NewMirror(t *Table, eng *classify.Engine, log *slog.Logger) *Mirror {
	if log == nil {
		log = slog.Default()
	}
	return &Mirror{Table: t, Eng: eng, Log: log, resync: make(chan struct{}, 1)}
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
	now := time.Now()
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
	p = store.NormPrefix(p)
	m.apply(p)
	for _, n := range m.Table.Nets() {
		if n != p && n.Bits() < p.Bits() && n.Contains(p.Addr()) {
			m.apply(n)
		}
	}
}

func (m *Mirror) apply(p netip.Prefix) {
	until, white, err := m.Eng.WhiteUntil(p)
	if err != nil {
		// The store cannot say: leave the kernel as it is (a white
		// host stays white while moat cannot ask) and sync later.
		m.Log.Warn("bypass: reading class", "prefix", p.String(), "err", err.Error())
		m.later()
		return
	}
	if white {
		e := Element{Prefix: p}
		if !until.IsZero() {
			if e.Timeout = time.Until(until); e.Timeout <= 0 {
				white = false
			}
		}
		if white {
			if err = m.Table.Put(e); err == nil {
				return
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
}

// later asks Run for a full sync.
func (m *Mirror) later() {
	select {
	case m.resync <- struct{}{}:
	default:
	}
}
