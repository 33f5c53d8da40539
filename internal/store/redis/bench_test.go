package redis

import (
	"net/netip"
	"testing"
	"time"

	"moat/internal/store"
	"moat/internal/store/redis/redistest"
)

// The benchmarks compare the hot path served by the local cache with a
// round trip to a real redis-server on loopback for every read:
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/store/redis/

func benchStore(b *testing.B, ttl time.Duration) *Store {
	srv := redistest.Start(b)
	s := openOpt(b, srv.URL(0), Options{Prefix: newPrefix(), CacheTTL: ttl})
	if err := s.PutHost(store.Host{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Class: store.White}); err != nil {
		b.Fatal(err)
	}
	if err := s.PutHost(store.Host{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Class: store.Black}); err != nil {
		b.Fatal(err)
	}
	if err := s.PutTriplet(benchTriplet, store.Attempt{Count: 1}); err != nil {
		b.Fatal(err)
	}
	flush(b, s)
	return s
}

var benchTriplet = store.Triplet{Net: netip.MustParsePrefix("192.0.2.0/24"), Sender: "a@example.org", Rcpt: "b@example.net"}

func benchLookup(b *testing.B, ttl time.Duration) {
	s := benchStore(b, ttl)
	addr := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := s.Lookup(addr); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func benchTripletRead(b *testing.B, ttl time.Duration) {
	s := benchStore(b, ttl)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := s.Triplet(benchTriplet); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkLookupCached(b *testing.B)    { benchLookup(b, time.Hour) }
func BenchmarkLookupUncached(b *testing.B)  { benchLookup(b, time.Nanosecond) }
func BenchmarkTripletCached(b *testing.B)   { benchTripletRead(b, time.Hour) }
func BenchmarkTripletUncached(b *testing.B) { benchTripletRead(b, time.Nanosecond) }

// BenchmarkLookupCachedParallel is the cached hot path under concurrent
// sessions.
func BenchmarkLookupCachedParallel(b *testing.B) {
	s := benchStore(b, time.Hour)
	addr := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Lookup(addr)
		}
	})
}
