package classify

import (
	"net/netip"
	"time"

	"moat/internal/prefix"
	"moat/internal/store"
)

// What a kernel bypass may let through without asking moat. The kernel
// matches addresses against sets of prefixes and knows nothing of
// precedence, so the engine answers for a whole prefix: a prefix is white
// for the bypass only when every address in it classifies white now.

// OnChange makes fn hear of every host entry the engine writes or
// forgets, right after the store has it. fn runs on the caller's path (a
// session's, the operator's) and must be quick. A second call replaces
// the first; nil stops it.
func (e *Engine) OnChange(fn func(netip.Prefix)) {
	if fn == nil {
		e.onChange.Store(nil)
		return
	}
	e.onChange.Store(&fn)
}

func (e *Engine) notify(p netip.Prefix) {
	if fn := e.onChange.Load(); fn != nil {
		(*fn)(p)
	}
}

// WhiteUntil reports whether every address in p classifies white now, and
// until when (zero: until the operator changes it). It is true for
// prefixes inside the configuration's whitelist, and for a stored white
// entry of exactly p that nothing overrides: for a host, what Classify
// says of it; for a network, no configured black prefix, imported
// network list or more specific stored entry of another class inside it
// (a white network with one black host in it is left to moat). A store
// error gives false with the error.
func (e *Engine) WhiteUntil(p netip.Prefix) (time.Time, bool, error) {
	p = prefix.Norm(p)
	if !p.IsValid() {
		return time.Time{}, false, nil
	}
	if e.whitelisted(p) {
		return time.Time{}, true, nil
	}
	h, ok, err := e.st.Host(p)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	var inside []netip.Prefix
	if !p.IsSingleIP() && h.Class == store.White {
		if inside, err = e.notWhite(); err != nil {
			return time.Time{}, false, err
		}
	}
	until, white := e.whiteEntry(h, inside)
	return until, white, nil
}

// WhiteEntry is a prefix that classifies white as a whole, with the end of
// its white time (zero: none).
type WhiteEntry struct {
	Prefix netip.Prefix
	Until  time.Time
}

// White returns every prefix that WhiteUntil says is white — the
// configuration's whitelist and the stored white entries nothing
// overrides — from one pass over the store.
func (e *Engine) White() ([]WhiteEntry, error) {
	var white, other []store.Host
	if err := e.st.Hosts(func(h store.Host) bool {
		if h.Class == store.White {
			white = append(white, h)
		} else {
			other = append(other, h)
		}
		return true
	}); err != nil {
		return nil, err
	}
	out := make([]WhiteEntry, 0, len(e.cfg().Whitelist)+len(white))
	for _, p := range e.cfg().Whitelist {
		out = append(out, WhiteEntry{Prefix: prefix.Norm(p)})
	}
	var inside []netip.Prefix
	for _, h := range other {
		inside = append(inside, h.Prefix)
	}
	for _, h := range white {
		if e.whitelisted(h.Prefix) {
			out = append(out, WhiteEntry{Prefix: h.Prefix}) // as WhiteUntil says
			continue
		}
		if until, ok := e.whiteEntry(h, inside); ok {
			out = append(out, WhiteEntry{Prefix: h.Prefix, Until: until})
		}
	}
	return out, nil
}

// whitelisted reports a prefix inside the configuration's whitelist.
func (e *Engine) whitelisted(p netip.Prefix) bool {
	for _, w := range e.cfg().Whitelist {
		if w.Bits() <= p.Bits() && w.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// notWhite returns the prefixes of the stored entries that are not white.
func (e *Engine) notWhite() ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := e.st.Hosts(func(h store.Host) bool {
		if h.Class != store.White {
			out = append(out, h.Prefix)
		}
		return true
	})
	return out, err
}

// whiteEntry reports whether the stored entry h makes every address of
// its prefix white, given the prefixes of the stored entries that are not
// white (only read for a network).
func (e *Engine) whiteEntry(h store.Host, notWhite []netip.Prefix) (time.Time, bool) {
	p := h.Prefix
	if h.Class != store.White {
		return time.Time{}, false
	}
	if p.IsSingleIP() {
		a := p.Addr()
		v, listed := e.listed(a)
		if e.verdictWith(a, v, listed, h, true).Class != store.White {
			return time.Time{}, false
		}
		return h.Expires, true
	}
	// A configured black prefix keeps a network out whoever whitened it.
	for _, b := range e.cfg().Blacklist {
		if b.Overlaps(p) {
			return time.Time{}, false
		}
	}
	// Only an operator's own white entry stands against a network list
	// (networkVerdict).
	if r := e.rep(); r != nil && !operatorWhite(h, true) && r.Drop.Overlaps(p) {
		return time.Time{}, false
	}
	for _, o := range notWhite {
		if o.Bits() > p.Bits() && p.Contains(o.Addr()) {
			return time.Time{}, false
		}
	}
	return h.Expires, true
}
