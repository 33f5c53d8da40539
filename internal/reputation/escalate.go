package reputation

import (
	"net/netip"
	"time"

	"moat/internal/prefix"
	"moat/internal/store"
)

// Counter counts distinct black hosts per key (a network, an AS number)
// within a sliding window: the evidence for network escalation, the
// lesson of McColo, where one hosting network sent most of the world's
// spam. The counts live in the store (store.Store.Tally), so every moat
// sharing a store counts the same hosts together, and a restart forgets
// nothing. A count is bounded by MaxPerKey hosts; keys need no bound of
// their own, since each lapses a window after its last host and there are
// never more than there are black hosts.
type Counter struct {
	Window    time.Duration
	MaxPerKey int // default 256

	st   store.Store
	kind string
}

// NewCounter returns a Counter over st with the given window. kind ("net",
// "asn") keeps its keys apart from other counters' in the store.
func NewCounter(st store.Store, kind string, window time.Duration) *Counter {
	return &Counter{Window: window, MaxPerKey: 256, st: st, kind: kind}
}

func (c *Counter) key(k string) string { return "escalation:" + c.kind + ":" + k }

// Add notes that host turned black under key at now, and returns how
// many distinct hosts did so under key within the window. An error means
// the store could not count (Redis down): the host is not counted.
func (c *Counter) Add(key string, host netip.Addr, now time.Time) (int, error) {
	return c.st.Tally(c.key(key), host.Unmap().String(), now, c.Window, c.MaxPerKey)
}

// Reset forgets key, once it has been escalated.
func (c *Counter) Reset(key string) error { return c.st.DropTally(c.key(key)) }

// Network folds addr to its escalation network: /v4 bits for IPv4, /v6
// bits for IPv6 (prefix.Fold, the one folding every package uses).
func Network(addr netip.Addr, v4, v6 int) netip.Prefix { return prefix.Fold(addr, v4, v6) }

// Escalation holds the thresholds of network escalation.
type Escalation struct {
	Threshold    int           // distinct black hosts in one network that make it black; 0: off
	Window       time.Duration // within this time (default 1h)
	TTL          time.Duration // how long the network stays black (default 24h)
	V4Prefix     int           // network of an IPv4 host (default 24)
	V6Prefix     int           // network of an IPv6 host (default 48)
	ASNThreshold int           // distinct black hosts in one AS that make it black; 0: off
}

// WithDefaults fills in the zero fields.
func (e Escalation) WithDefaults() Escalation {
	if e.Window <= 0 {
		e.Window = time.Hour
	}
	if e.TTL <= 0 {
		e.TTL = 24 * time.Hour
	}
	if e.V4Prefix == 0 {
		e.V4Prefix = 24
	}
	if e.V6Prefix == 0 {
		e.V6Prefix = 48
	}
	return e
}
