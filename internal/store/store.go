// Package store owns moat's memory: hosts and their classes, greylist
// triplets, trap addresses, counters and opaque evidence records.
//
// There are two implementations behind the one Store interface: an embedded
// bbolt file (the default, one machine) and Redis (several MX hosts sharing
// one memory). Both pass the same conformance suite in storetest. No bbolt or
// Redis type ever appears in this package's API.
//
// Reads are served from memory and never block on disk or network in the hot
// path. Writes are applied to memory at once and committed in batches; Flush
// waits until everything written before it is durable. Callers that must not
// acknowledge anything before it is durable (operator commands, trap hits)
// call Flush; the greylist does not, because losing a triplet only costs a
// sender one more retry, never a message.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Class is what a client host deserves.
type Class uint8

const (
	// Grey is the zero Class: unknown, greylisted.
	Grey Class = iota
	// White hosts are passed straight to the backend.
	White
	// Black hosts meet the tarpit.
	Black
)

func (c Class) String() string {
	switch c {
	case Grey:
		return "grey"
	case White:
		return "white"
	case Black:
		return "black"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// ParseClass turns "white", "grey" (or "gray") and "black" into a Class.
func ParseClass(s string) (Class, error) {
	switch strings.ToLower(s) {
	case "grey", "gray":
		return Grey, nil
	case "white":
		return White, nil
	case "black":
		return Black, nil
	}
	return Grey, fmt.Errorf("unknown class %q (want white, grey or black)", s)
}

// Host is what moat remembers of one client address or one network.
// A single address is a /32 (IPv4) or /128 (IPv6) prefix.
type Host struct {
	Prefix  netip.Prefix
	Class   Class
	Reason  string    // why it has this class: "greylist retry", "trap hit <a@b>", "operator", …
	First   time.Time // first seen
	Last    time.Time // last seen
	Expires time.Time // zero: never
}

// Triplet is the greylist key: where a message comes from, who it claims to
// be from and whom it is for. Net is the client address folded to its
// network (/24, /64 by default); Sender and Rcpt are normalised addresses
// (Sender is "" for the null sender).
type Triplet struct {
	Net    netip.Prefix
	Sender string
	Rcpt   string
}

func (t Triplet) String() string {
	return t.Net.String() + " <" + t.Sender + "> <" + t.Rcpt + ">"
}

// Attempt is what the greylist remembers of a triplet.
type Attempt struct {
	First   time.Time // first delivery attempt
	Last    time.Time // most recent attempt
	Count   uint32    // attempts seen
	Expires time.Time // forget the triplet after this
}

// ErrNotFound is returned by deletions of things that do not exist.
var ErrNotFound = errors.New("store: not found")

// ErrUnavailable wraps errors of a store that cannot be reached (Redis
// down). Callers answer 4xx to clients when they see it.
var ErrUnavailable = errors.New("store: unavailable")

// Store is moat's memory. All methods are safe for concurrent use. Expired
// entries are never returned; implementations purge them by themselves.
type Store interface {
	// Lookup returns the entry for addr: the host entry of the address
	// itself if there is one, else the most specific network entry that
	// contains it.
	Lookup(addr netip.Addr) (Host, bool, error)
	// Host returns the entry stored under exactly p.
	Host(p netip.Prefix) (Host, bool, error)
	// PutHost stores h under h.Prefix, replacing what was there.
	PutHost(h Host) error
	// DeleteHost forgets p. It returns ErrNotFound if there was nothing.
	DeleteHost(p netip.Prefix) error
	// Hosts calls fn for every unexpired host and network entry until fn
	// returns false.
	Hosts(fn func(Host) bool) error

	// Triplet returns what the greylist remembers of t.
	Triplet(t Triplet) (Attempt, bool, error)
	// PutTriplet stores a for t.
	PutTriplet(t Triplet, a Attempt) error

	// Traps returns the trap addresses stored at run time (the config's
	// traps are not stored), sorted.
	Traps() ([]string, error)
	// AddTrap stores a normalised trap address.
	AddTrap(addr string) error
	// DelTrap removes a trap address. It returns ErrNotFound if there was none.
	DelTrap(addr string) error

	// Add adds delta to the named counter ("tarpit_seconds", "trap_hits:<a@b>", …).
	Add(counter string, delta int64) error
	// Counters returns all counters.
	Counters() (map[string]int64, error)

	// Get, Put, Delete and Scan keep opaque evidence records, grouped by
	// kind ("candidate", "karma", …). A zero expires never expires.
	Get(kind, key string) ([]byte, bool, error)
	Put(kind, key string, val []byte, expires time.Time) error
	Delete(kind, key string) error
	Scan(kind string, fn func(key string, val []byte) bool) error

	// Flush returns when every write made before it was called is durable.
	Flush(ctx context.Context) error
	// Close flushes and releases the store.
	Close() error
}

// HostPrefix returns the single-address prefix of addr (/32 or /128),
// with IPv4-mapped IPv6 addresses unmapped first.
func HostPrefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	return netip.PrefixFrom(addr, addr.BitLen())
}
