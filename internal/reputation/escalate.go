package reputation

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"moat/internal/prefix"
)

// Counter counts distinct black hosts per key (a network, an AS number)
// within a sliding window: the evidence for network escalation, the
// lesson of McColo, where one hosting network sent most of the world's
// spam. It lives in memory only: after a restart escalation starts
// counting again, which at worst delays it by one window.
//
// A Counter is bounded: it follows at most MaxKeys keys and MaxPerKey
// hosts per key; beyond that, new keys are not followed until old ones
// leave the window. Reaching MaxKeys is logged once, and again only after
// the count went below it.
type Counter struct {
	Window    time.Duration
	MaxKeys   int          // default 100000
	MaxPerKey int          // default 256
	Log       *slog.Logger // default slog.Default()

	mu   sync.Mutex
	keys map[string]map[netip.Addr]time.Time
	full bool
}

// NewCounter returns a Counter with the given window.
func NewCounter(window time.Duration) *Counter {
	return &Counter{Window: window, MaxKeys: 100000, MaxPerKey: 256, keys: map[string]map[netip.Addr]time.Time{}}
}

// Add notes that host turned black under key at now, and returns how
// many distinct hosts did so under key within the window.
func (c *Counter) Add(key string, host netip.Addr, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	hosts, ok := c.keys[key]
	if !ok {
		if len(c.keys) >= c.MaxKeys {
			c.sweep(now)
			if len(c.keys) >= c.MaxKeys {
				if !c.full {
					c.full = true
					log := c.Log
					if log == nil {
						log = slog.Default()
					}
					log.Warn("escalation: counting at its cap of networks: new ones are not counted until old ones leave the window",
						"max_keys", c.MaxKeys, "window", c.Window.String())
				}
				return 1
			}
		}
		c.full = false
		hosts = map[netip.Addr]time.Time{}
		c.keys[key] = hosts
	}
	for h, t := range hosts {
		if now.Sub(t) > c.Window {
			delete(hosts, h)
		}
	}
	if _, seen := hosts[host]; seen || len(hosts) < c.MaxPerKey {
		hosts[host] = now
	}
	return len(hosts)
}

// Reset forgets key, once it has been escalated.
func (c *Counter) Reset(key string) {
	c.mu.Lock()
	delete(c.keys, key)
	c.mu.Unlock()
}

func (c *Counter) sweep(now time.Time) {
	for k, hosts := range c.keys {
		for h, t := range hosts {
			if now.Sub(t) > c.Window {
				delete(hosts, h)
			}
		}
		if len(hosts) == 0 {
			delete(c.keys, k)
		}
	}
}

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
