// Package storetest is the conformance suite every store.Store
// implementation passes: the semantics written in store.go, checked the
// same way for the embedded bbolt store and for Redis.
//
// It only calls the Store interface; it never looks at how an
// implementation keeps its data. Times it stores are whole seconds, so an
// implementation may keep times to the second.
package storetest

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
)

// Open makes a new, empty store that uses c for expiry.
type Open func(t *testing.T, c *clock.Fake) store.Store

// start is where every fake clock of the suite begins: a whole second, so
// that implementations keeping seconds round-trip every time exactly.
var start = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Run runs the conformance suite against stores made by open. The fake
// clock passed to open is the one the store must use for expiry; the suite
// advances it. open is called once per subtest, and the suite closes the
// store when the subtest ends.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, c *clock.Fake)
	}{
		{"HostRoundTrip", testHostRoundTrip},
		{"HostOverwrite", testHostOverwrite},
		{"HostInvalidPrefix", testHostInvalidPrefix},
		{"LookupMostSpecific", testLookupMostSpecific},
		{"LookupFamilies", testLookupFamilies},
		{"HostExact", testHostExact},
		{"DeleteHost", testDeleteHost},
		{"HostsIteration", testHostsIteration},
		{"HostsReentrant", testHostsReentrant},
		{"HostExpiry", testHostExpiry},
		{"TripletRoundTrip", testTripletRoundTrip},
		{"TripletDistinct", testTripletDistinct},
		{"TripletExpiry", testTripletExpiry},
		{"Traps", testTraps},
		{"Counters", testCounters},
		{"Records", testRecords},
		{"RecordScan", testRecordScan},
		{"RecordExpiry", testRecordExpiry},
		{"RecordCopies", testRecordCopies},
		{"Flush", testFlush},
		{"Concurrency", testConcurrency},
		{"UpdateHost", testUpdateHost},
		{"UpdateHostAtomic", testUpdateHostAtomic},
		{"Tally", testTally},
		{"TallyConcurrent", testTallyConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clock.NewFake(start)
			s := open(t, c)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s, c)
		})
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func sameTime(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() && b.IsZero()
	}
	return a.Equal(b)
}

func sameHost(a, b store.Host) bool {
	return a.Prefix == b.Prefix && a.Class == b.Class && a.Source == b.Source && a.Reason == b.Reason &&
		sameTime(a.First, b.First) && sameTime(a.Last, b.Last) && sameTime(a.Expires, b.Expires)
}

func sameAttempt(a, b store.Attempt) bool {
	return a.Count == b.Count && sameTime(a.First, b.First) && sameTime(a.Last, b.Last) && sameTime(a.Expires, b.Expires)
}

func fmtHost(h store.Host) string {
	return fmt.Sprintf("{%v %v/%v %q first=%v last=%v expires=%v}", h.Prefix, h.Class, h.Source, h.Reason, h.First.UTC(), h.Last.UTC(), h.Expires.UTC())
}
