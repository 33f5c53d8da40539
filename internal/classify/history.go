package classify

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"moat/internal/store"
)

// Event is one entry of a host's evidence history.
type Event struct {
	At     time.Time `json:"at"`
	Class  string    `json:"class,omitempty"` // the class it moved to; "" for evidence that changed none
	Reason string    `json:"reason"`
}

// History returns what moved p between classes, oldest first (at most
// the last 50 events, kept 180 days).
func (e *Engine) History(p netip.Prefix) ([]Event, error) {
	b, ok, err := e.st.Get(historyKind, hostKey(p))
	if err != nil || !ok {
		return nil, err
	}
	var evs []Event
	if err := json.Unmarshal(b, &evs); err != nil {
		return nil, fmt.Errorf("classify: history of %s: %w", p, err)
	}
	return evs, nil
}

// record appends ev to p's history. A failure to record costs only the
// record, never the decision, so it is not reported.
func (e *Engine) record(p netip.Prefix, ev Event) {
	e.ev.hmu.Lock()
	defer e.ev.hmu.Unlock()
	evs, _ := e.History(p)
	evs = append(evs, ev)
	if len(evs) > maxHistory {
		evs = evs[len(evs)-maxHistory:]
	}
	b, err := json.Marshal(evs)
	if err != nil {
		return
	}
	_ = e.st.Put(historyKind, hostKey(p), b, ev.At.Add(historyTTL))
}

// changed is called after every store write of a class: it records class
// changes in the history and feeds network escalation. A trap or bait hit
// counts towards escalation only from a host that was grey and unknown: a
// hit through a vouched-for host is refused, not blacklisted, and a host
// that was already listed for something else adds nothing new about its
// network.
func (e *Engine) changed(p netip.Prefix, old store.Host, existed bool, h store.Host) {
	if !existed || old.Class != h.Class {
		e.record(p, Event{At: h.Last, Class: h.Class.String(), Reason: h.Reason})
	}
	if h.Class != store.Black || !p.IsSingleIP() || existed && old.Class == store.Black {
		return
	}
	if Proves(h.Source) && existed && SourceOf(old) != store.SourceGreylist {
		return
	}
	e.escalate(p.Addr(), h.Last)
}

// hostKey is the record key of a host or network: the address for a
// single host, the CIDR for a network.
func hostKey(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
