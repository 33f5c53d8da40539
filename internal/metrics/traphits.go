package metrics

import (
	"sync"
	"time"
)

// TrapHit is one session that named a trap, as the dashboard lists it.
// Helo, Sender and Reason are what the client sent: shown as text only.
type TrapHit struct {
	At      time.Time `json:"at"`
	Client  string    `json:"client"`
	Helo    string    `json:"helo"`
	Sender  string    `json:"sender"`
	Reason  string    `json:"reason"`  // "trap hit <addr>"
	Refused bool      `json:"refused"` // the host was vouched for: refused, not blacklisted
}

// TrapHits keeps the last trap hits seen in sessions.
type TrapHits struct {
	mu   sync.Mutex
	ring []TrapHit
	next int
	n    int
}

func newTrapHits(n int) *TrapHits { return &TrapHits{ring: make([]TrapHit, n)} }

func (h *TrapHits) add(hit TrapHit) {
	h.mu.Lock()
	h.ring[h.next] = hit
	h.next = (h.next + 1) % len(h.ring)
	h.n = min(h.n+1, len(h.ring))
	h.mu.Unlock()
}

// Recent returns the hits kept, the newest first.
func (h *TrapHits) Recent() []TrapHit {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]TrapHit, 0, h.n)
	for i := 1; i <= h.n; i++ {
		out = append(out, h.ring[(h.next-i+len(h.ring))%len(h.ring)])
	}
	return out
}
