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
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"moat/internal/prefix"
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

// Source is the kind of evidence that gave a host entry its class. The
// store keeps it and never interprets it: how strong each source is, and
// which may replace which, is written once in internal/classify.
//
// Both stores encode it in the high four bits of the class byte, so it
// takes no room and entries written before it existed read as
// SourceUnknown. There is room for 16 sources.
type Source uint8

const (
	// SourceUnknown: an entry written before sources were kept, or
	// imported from a file that did not say.
	SourceUnknown Source = iota
	// SourceOperator: set by hand ("moat hosts white|black", the admin
	// API). Only the operator changes it.
	SourceOperator
	// SourceGreylist: listed grey while its triplets wait out the
	// greylist.
	SourceGreylist
	// SourceAccepted: white because the backend accepted a message from
	// it after a greylist pass ("those that successfully retry").
	SourceAccepted
	// SourceDNSWL: white for a while by a DNS allow list.
	SourceDNSWL
	// SourceDNSBL: black by DNS block lists.
	SourceDNSBL
	// SourceFeedback: grey or black by the real server's content
	// filters (karma).
	SourceFeedback
	// SourceEscalation: a network made black because many of its hosts
	// are.
	SourceEscalation
	// SourceImport: carried over from another greylister (spamd,
	// postgrey).
	SourceImport
	// SourceTrap: wrote to or from a spamtrap.
	SourceTrap
	// SourceBait: harvested a bait address that was then used.
	SourceBait
	// SourceEarlyTalk: spoke before the banner (or sent a PROXY header
	// it had no right to send).
	SourceEarlyTalk
	// SourceSmuggling: sent a message end or line ending that only a
	// lax receiver would take (bare CR, LF or NUL around the final dot).
	SourceSmuggling
	// SourceRelay: asked the tarpit, an apparent open relay, to relay
	// to a domain that is not ours.
	SourceRelay
	// SourceNetList: in an imported network list (DROP-style) or an
	// autonomous system marked by escalation.
	SourceNetList

	numSources
)

var sourceNames = [numSources]string{"unknown", "operator", "greylist", "accepted", "dnswl", "dnsbl",
	"feedback", "escalation", "import", "trap", "bait", "early-talk", "smuggling", "relay", "netlist"}

func (s Source) String() string {
	if s < numSources {
		return sourceNames[s]
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// ParseSource reads what String writes; "" is SourceUnknown.
func ParseSource(s string) (Source, error) {
	if s == "" {
		return SourceUnknown, nil
	}
	for i, n := range sourceNames {
		if n == s {
			return Source(i), nil
		}
	}
	return SourceUnknown, fmt.Errorf("unknown source %q", s)
}

// PackClass is how both stores write a class and its source in one byte.
func PackClass(c Class, s Source) byte { return byte(c)&0x0f | byte(s)<<4 }

// UnpackClass undoes PackClass.
func UnpackClass(b byte) (Class, Source) { return Class(b & 0x0f), Source(b >> 4) }

// Host is what moat remembers of one client address or one network.
// A single address is a /32 (IPv4) or /128 (IPv6) prefix.
type Host struct {
	Prefix  netip.Prefix
	Class   Class
	Source  Source    // the kind of evidence behind Class
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
	// UpdateHost replaces the entry stored under exactly p with what fn
	// returns, atomically with respect to every other UpdateHost of p —
	// in this process and, for a shared store, on every moat sharing it.
	// fn gets the live entry (ok false when there is none) and returns
	// the new one and whether to write it; it may be called more than
	// once and must not call the store. UpdateHost returns the entry as
	// it is afterwards and whether fn's entry was written. Class changes
	// go through it, so that evidence read a moment ago can never
	// overwrite stronger evidence written since.
	UpdateHost(p netip.Prefix, fn func(old Host, ok bool) (Host, bool)) (Host, bool, error)
	// DeleteHost forgets p. It returns ErrNotFound if there was nothing.
	DeleteHost(p netip.Prefix) error
	// Hosts calls fn for every unexpired host and network entry until fn
	// returns false.
	Hosts(fn func(Host) bool) error

	// Triplet returns what the greylist remembers of t.
	Triplet(t Triplet) (Attempt, bool, error)
	// PutTriplet stores a for t.
	PutTriplet(t Triplet, a Attempt) error
	// Triplets calls fn for every unexpired triplet until fn returns
	// false, in no particular order. Stores keep a triplet under its ID
	// only, never its addresses, so that is what fn gets: enough for
	// export and import (PutTripletID), not for reading. fn may call the
	// store.
	Triplets(fn func(TripletID, Attempt) bool) error
	// PutTripletID stores a under id, as PutTriplet does under t.ID().
	PutTripletID(id TripletID, a Attempt) error

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
	// Records calls fn for every unexpired record of every kind, with its
	// expiry (zero: never), until fn returns false. It is for export; fn
	// may call the store.
	Records(fn func(kind, key string, val []byte, expires time.Time) bool) error

	// Tally notes member under key at time at, and returns how many
	// distinct members key holds whose latest note is no older than
	// window before at: older notes are forgotten, and so is a key with
	// none left. A key keeps at most limit members (the latest), so the
	// count never exceeds limit. Like everything in the store a tally is
	// shared: every moat on one Redis counts together. Network
	// escalation counts black hosts per network and per autonomous
	// system with it. Tallies are working state, not part of an export.
	Tally(key, member string, at time.Time, window time.Duration, limit int) (int, error)
	// DropTally forgets key's notes (nothing happens if there are none).
	DropTally(key string) error

	// Flush returns when every write made before it was called is durable.
	Flush(ctx context.Context) error
	// Close flushes and releases the store.
	Close() error
}

// Watcher is a store shared by several moats that tells of the host
// entries the others change (Redis, through its change channel). The
// embedded store has no other writer and does not implement it.
type Watcher interface {
	// WatchHosts makes fn hear, on a goroutine of the store's, of every
	// prefix whose entry another moat wrote or deleted, after this
	// store's reads see the change; and of the zero Prefix when changes
	// may have been missed (the shared store was unreachable). A second
	// call replaces the first.
	WatchHosts(fn func(netip.Prefix))
}

// CheckTally refuses what no store's tally holds: an empty key or member,
// one longer than 255 bytes (a member is an address, a key a network or
// an AS), a window or limit that is not positive.
func CheckTally(key, member string, window time.Duration, limit int) error {
	switch {
	case key == "" || len(key) > 255:
		return fmt.Errorf("store: tally: bad key %q", key)
	case member == "" || len(member) > 255:
		return fmt.Errorf("store: tally %s: bad member %q", key, member)
	case window <= 0 || limit < 1:
		return fmt.Errorf("store: tally %s: window %v and limit %d must be positive", key, window, limit)
	}
	return nil
}

// TripletID is a triplet's identity in a store: the first 16 bytes of the
// SHA-256 of its fields, with Net in the one spelling prefix.Norm gives. A
// fixed-size key keeps an entry small whatever the length of the
// addresses; a cryptographic hash keeps it the same across restarts,
// machines and stores (an export from one store imports into another), and
// keeps addresses out of the store. Two triplets colliding would only let a
// sender skip one greylist retry.
type TripletID [16]byte

// ID returns t's TripletID.
func (t Triplet) ID() TripletID {
	p := prefix.Norm(t.Net)
	var buf [192]byte
	b := buf[:0]
	a := p.Addr().As16()
	b = append(b, a[:]...)
	fam := byte(0)
	switch {
	case p.Addr().Is4():
		fam = 4
	case p.Addr().Is6():
		fam = 6
	}
	b = append(b, fam, byte(p.Bits()))
	// The sender's length keeps <ab> <c> apart from <a> <bc>.
	b = binary.BigEndian.AppendUint32(b, uint32(len(t.Sender)))
	b = append(b, t.Sender...)
	b = append(b, t.Rcpt...)
	sum := sha256.Sum256(b)
	var id TripletID
	copy(id[:], sum[:16])
	return id
}

// String returns id in hex.
func (id TripletID) String() string { return hex.EncodeToString(id[:]) }

// ParseTripletID reads the hex form String writes.
func ParseTripletID(s string) (TripletID, error) {
	var id TripletID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("store: triplet id %q: want %d hex digits", s, 2*len(id))
	}
	copy(id[:], b)
	return id, nil
}

// HostPrefix is prefix.Host: the key a single client address is stored
// under. It stays here because the engine and many tests name it so.
func HostPrefix(addr netip.Addr) netip.Prefix { return prefix.Host(addr) }

var (
	minTime = time.Unix(0, math.MinInt64+1)
	maxTime = time.Unix(0, math.MaxInt64)
)

// UnixNanos is how both stores encode times: the zero time is 0, and times
// outside int64 nanoseconds (years before 1678 or after 2262) are clamped
// instead of overflowing.
func UnixNanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minTime):
		return math.MinInt64 + 1
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// FromUnixNanos undoes UnixNanos.
func FromUnixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
