package redis

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"moat/internal/store"
)

// Key layout under the prefix P (default "moat:"):
//
//	P h:<prefix>              host or network entry        string, native TTL
//	P hosts                   every host and network entry sorted set, score = expiry (ms) or +inf
//	P nets                    the network entries only     sorted set, as hosts
//	P t:<triplet id in hex>   greylist triplet             string, native TTL
//	P traps                   run-time trap addresses      set
//	P counters                counters                     hash of integers
//	P r:<len(kind)>:<kind>:<key>  evidence record          string, native TTL
//	P rk:<kind>               the keys of one kind         sorted set, as hosts
//	P kinds                   record kinds in use          set
//	P n:<key>                 tally                        sorted set, score = note (ms), native TTL = window
//	P events                  pub/sub channel of host changes
//
// Every value starts with a format byte and carries its own expiry, so a
// reader can drop what has expired by moat's clock before Redis's TTL ran
// out, and a moat that finds a format it does not know says so instead of
// misreading it. Times are Unix nanoseconds, 0 meaning the zero time.
// The sorted sets are indexes: they make "list the hosts" and "scan a
// kind" cost what they return rather than a walk over every key, and they
// lose their expired members in a periodic purge.
const formatV1 = 1

var errFormat = errors.New("store: redis: value in an unknown format (written by a newer moat?)")

// keys names everything under one prefix.
type keys struct{ p string }

func (k keys) host(p netip.Prefix) string        { return k.p + "h:" + p.String() }
func (k keys) hosts() string                     { return k.p + "hosts" }
func (k keys) nets() string                      { return k.p + "nets" }
func (k keys) triplet(id store.TripletID) string { return k.p + "t:" + id.String() }
func (k keys) tripletMatch() string              { return globEscape(k.p) + "t:*" }
func (k keys) traps() string                     { return k.p + "traps" }
func (k keys) counters() string                  { return k.p + "counters" }
func (k keys) kinds() string                     { return k.p + "kinds" }
func (k keys) kindIndex(kind string) string      { return k.p + "rk:" + kind }
func (k keys) events() string                    { return k.p + "events" }
func (k keys) tally(key string) string           { return k.p + "n:" + key }

// record keys carry the kind's length, so ("a", "b:c") and ("a:b", "c")
// are different keys.
func (k keys) record(kind, key string) string {
	return k.p + "r:" + strconv.Itoa(len(kind)) + ":" + kind + ":" + key
}

// globEscape quotes the characters SCAN's MATCH treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// toNanos and fromNanos are the shared time encoding of both stores.
func toNanos(t time.Time) int64 { return store.UnixNanos(t) }

func fromNanos(n int64) time.Time { return store.FromUnixNanos(n) }

// live reports whether something expiring at exp is visible at now.
func live(exp, now time.Time) bool { return exp.IsZero() || exp.After(now) }

// score is an index member's score: its expiry in Unix milliseconds, or
// +inf for never.
func score(exp time.Time) float64 {
	if exp.IsZero() {
		return math.Inf(1)
	}
	return float64(exp.UnixMilli())
}

const hostHdr = 1 + 1 + 3*8

func encodeHost(h store.Host) []byte {
	b := make([]byte, 0, hostHdr+len(h.Reason))
	b = append(b, formatV1, store.PackClass(h.Class, h.Source))
	b = binary.BigEndian.AppendUint64(b, uint64(toNanos(h.First)))
	b = binary.BigEndian.AppendUint64(b, uint64(toNanos(h.Last)))
	b = binary.BigEndian.AppendUint64(b, uint64(toNanos(h.Expires)))
	return append(b, h.Reason...)
}

func decodeHost(p netip.Prefix, b []byte) (store.Host, error) {
	if len(b) < hostHdr || b[0] != formatV1 {
		return store.Host{}, errFormat
	}
	class, source := store.UnpackClass(b[1])
	return store.Host{
		Prefix:  p,
		Class:   class,
		Source:  source,
		First:   fromNanos(int64(binary.BigEndian.Uint64(b[2:]))),
		Last:    fromNanos(int64(binary.BigEndian.Uint64(b[10:]))),
		Expires: fromNanos(int64(binary.BigEndian.Uint64(b[18:]))),
		Reason:  string(b[hostHdr:]),
	}, nil
}

const tripletLen = 1 + 3*8 + 4

func encodeAttempt(a store.Attempt) []byte {
	b := make([]byte, 0, tripletLen)
	b = append(b, formatV1)
	b = binary.BigEndian.AppendUint64(b, uint64(toNanos(a.First)))
	b = binary.BigEndian.AppendUint64(b, uint64(toNanos(a.Last)))
	b = binary.BigEndian.AppendUint64(b, uint64(toNanos(a.Expires)))
	return binary.BigEndian.AppendUint32(b, a.Count)
}

func decodeAttempt(b []byte) (store.Attempt, error) {
	if len(b) != tripletLen || b[0] != formatV1 {
		return store.Attempt{}, errFormat
	}
	return store.Attempt{
		First:   fromNanos(int64(binary.BigEndian.Uint64(b[1:]))),
		Last:    fromNanos(int64(binary.BigEndian.Uint64(b[9:]))),
		Expires: fromNanos(int64(binary.BigEndian.Uint64(b[17:]))),
		Count:   binary.BigEndian.Uint32(b[25:]),
	}, nil
}

const recordHdr = 1 + 8

func encodeRecord(val []byte, exp time.Time) []byte {
	b := make([]byte, 0, recordHdr+len(val))
	b = append(b, formatV1)
	b = binary.BigEndian.AppendUint64(b, uint64(toNanos(exp)))
	return append(b, val...)
}

// decodeRecord returns a copy of the value and its expiry.
func decodeRecord(b []byte) ([]byte, time.Time, error) {
	if len(b) < recordHdr || b[0] != formatV1 {
		return nil, time.Time{}, errFormat
	}
	return append([]byte{}, b[recordHdr:]...), fromNanos(int64(binary.BigEndian.Uint64(b[1:]))), nil
}
