package classify

import (
	"fmt"

	"moat/internal/greylist"
	"moat/internal/store"
)

// Greylist returns the engine's greylist.
func (e *Engine) Greylist() *greylist.Greylist { return e.grey }

// Carried says what became of an entry carried over from another
// greylister.
type Carried uint8

const (
	Stored Carried = iota // written
	Stood                 // moat's own evidence was as strong or stronger, and stood
	Lapsed                // its expiry had passed: nothing to carry over
)

// Import stores a host entry carried over from another greylister (spamd,
// postgrey) with SourceImport: its class, reason and times as the file
// gave them (now for those it did not give), unless stronger evidence
// stands (precedence.go). An imported
// black host ranks with the block lists, never as proof: a mistake in the
// file costs a sender a delay, never a message. An entry without an
// expiry gets moat's own: white_ttl or black_ttl after it was last seen.
// The change goes into the host's history but not into network
// escalation: a list brought in from elsewhere, all at once, says nothing
// about how this MX's neighbours behave now.
func (e *Engine) Import(h store.Host) (Carried, error) {
	if h.Class == store.Grey {
		return Stood, fmt.Errorf("classify: import %s: only white and black entries are carried over", h.Prefix)
	}
	h.Source = store.SourceImport
	now := e.clock.Now()
	if h.Last.IsZero() {
		h.Last = now
	}
	if h.First.IsZero() || h.First.After(h.Last) {
		h.First = h.Last
	}
	if h.Expires.IsZero() {
		ttl := e.cfg().WhiteTTL
		if h.Class == store.Black {
			ttl = e.cfg().BlackTTL
		}
		h.Expires = h.Last.Add(ttl)
	}
	if !h.Expires.After(now) {
		return Lapsed, nil
	}
	var (
		old     store.Host
		existed bool
	)
	_, wrote, err := e.st.UpdateHost(h.Prefix, func(o store.Host, ok bool) (store.Host, bool) {
		old, existed = o, ok
		if ok && !replaces(h, o) {
			return o, false
		}
		return h, true
	})
	switch {
	case err != nil:
		return Stood, fmt.Errorf("classify: import %s: %w", h.Prefix, err)
	case !wrote:
		return Stood, nil
	}
	if !existed || old.Class != h.Class {
		e.record(h.Prefix, Event{At: now, Class: h.Class.String(), Reason: h.Reason})
	}
	e.notify(h.Prefix)
	return Stored, nil
}
