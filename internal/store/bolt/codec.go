package bolt

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"moat/internal/prefix"
	"moat/internal/store"
)

// On-disk layout, format version 1. Every integer is big-endian; every time
// is Unix nanoseconds as an int64, 0 meaning the zero time.
//
//	meta      "version" → uint32
//	hosts     prefix (netip.Prefix binary form) → class u8 (source in its high 4 bits) | first | last | expires | reason
//	triplets  tripletKey (16 bytes) → first | last | expires | count u32
//	traps     address → empty
//	counters  name → int64
//	records   one nested bucket per kind: key → expires | value
//	tallies   key → expires | (note | member length u8 | member)…
//
// Values are fixed-size binary rather than JSON because there are millions
// of triplets: 28 bytes each on disk, decoded without allocating at Open.
const formatVersion = 1

var (
	bucketMeta     = []byte("meta")
	bucketHosts    = []byte("hosts")
	bucketTriplets = []byte("triplets")
	bucketTraps    = []byte("traps")
	bucketCounters = []byte("counters")
	bucketRecords  = []byte("records")
	bucketTallies  = []byte("tallies")

	keyVersion = []byte("version")

	// A file written before tallies existed gets their bucket at Open
	// (initFile): the format version stays 1.
	allBuckets = [][]byte{bucketMeta, bucketHosts, bucketTriplets, bucketTraps, bucketCounters, bucketRecords, bucketTallies}
)

const (
	hostHeaderLen = 1 + 3*8
	tripletLen    = 3*8 + 4
	recordHdrLen  = 8
)

var errFormat = errors.New("malformed entry")

// tkey is a triplet's identity in memory and on disk: the first 16 bytes of
// the SHA-256 of its fields. A fixed-size key keeps an entry small whatever
// the length of the addresses, and a cryptographic hash keeps it the same
// across restarts and machines (a seeded map hash would not). Two triplets
// colliding would only let a sender skip one greylist retry.
type tkey [16]byte

// tval is what memory keeps of a triplet: 32 bytes, no pointers, so a
// million of them cost the garbage collector nothing to scan.
type tval struct {
	first, last, expires int64
	count                uint32
}

// tripletKey is store.Triplet.ID: the same key in every store, so an
// export from one imports into another.
func tripletKey(t store.Triplet) tkey { return tkey(t.ID()) }

// toNanos and fromNanos are the shared time encoding of both stores.
func toNanos(t time.Time) int64 { return store.UnixNanos(t) }

func fromNanos(n int64) time.Time { return store.FromUnixNanos(n) }

// live reports whether an entry with the given expiry is visible at now.
func live(expires, now int64) bool { return expires == 0 || expires > now }

func appendTriplet(b []byte, v tval) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(v.first))
	b = binary.BigEndian.AppendUint64(b, uint64(v.last))
	b = binary.BigEndian.AppendUint64(b, uint64(v.expires))
	return binary.BigEndian.AppendUint32(b, v.count)
}

func decodeTriplet(b []byte) (tval, error) {
	if len(b) != tripletLen {
		return tval{}, errFormat
	}
	return tval{
		first:   int64(binary.BigEndian.Uint64(b)),
		last:    int64(binary.BigEndian.Uint64(b[8:])),
		expires: int64(binary.BigEndian.Uint64(b[16:])),
		count:   binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// hval is what memory keeps of a host or network entry.
type hval struct {
	class                store.Class
	source               store.Source
	reason               string
	first, last, expires int64
}

func (v hval) host(p netip.Prefix) store.Host {
	return store.Host{
		Prefix:  p,
		Class:   v.class,
		Source:  v.source,
		Reason:  v.reason,
		First:   fromNanos(v.first),
		Last:    fromNanos(v.last),
		Expires: fromNanos(v.expires),
	}
}

func appendHostKey(b []byte, p netip.Prefix) []byte {
	b, _ = p.AppendBinary(b) // cannot fail for a valid prefix
	return b
}

func decodeHostKey(b []byte) (netip.Prefix, error) {
	var p netip.Prefix
	if err := p.UnmarshalBinary(b); err != nil || !p.IsValid() {
		return netip.Prefix{}, errFormat
	}
	return prefix.Norm(p), nil
}

func appendHost(b []byte, v hval) []byte {
	b = append(b, store.PackClass(v.class, v.source))
	b = binary.BigEndian.AppendUint64(b, uint64(v.first))
	b = binary.BigEndian.AppendUint64(b, uint64(v.last))
	b = binary.BigEndian.AppendUint64(b, uint64(v.expires))
	return append(b, v.reason...)
}

func decodeHost(b []byte) (hval, error) {
	if len(b) < hostHeaderLen {
		return hval{}, errFormat
	}
	class, source := store.UnpackClass(b[0])
	return hval{
		class:   class,
		source:  source,
		first:   int64(binary.BigEndian.Uint64(b[1:])),
		last:    int64(binary.BigEndian.Uint64(b[9:])),
		expires: int64(binary.BigEndian.Uint64(b[17:])),
		reason:  string(b[hostHeaderLen:]),
	}, nil
}

// record is an opaque evidence record in memory.
type record struct {
	val     []byte
	expires int64
}

func appendRecord(b []byte, r record) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(r.expires))
	return append(b, r.val...)
}

func decodeRecord(b []byte) (record, error) {
	if len(b) < recordHdrLen {
		return record{}, errFormat
	}
	return record{
		expires: int64(binary.BigEndian.Uint64(b)),
		val:     append([]byte{}, b[recordHdrLen:]...),
	}, nil
}

func decodeCounter(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, errFormat
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}
