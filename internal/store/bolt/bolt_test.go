package bolt

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"moat/internal/clock"
	"moat/internal/store"
	"moat/internal/store/storetest"
)

func openT(t testing.TB, path string, c clock.Clock) *Store {
	t.Helper()
	s, err := Open(path, Options{Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, c *clock.Fake) store.Store {
		return openT(t, filepath.Join(t.TempDir(), "moat.db"), c)
	})
}

// TestMemoryConformance: the memory store is the same store without its
// file, and keeps the same contract.
func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, c *clock.Fake) store.Store {
		return Memory(Options{Clock: c})
	})
}

// TestOpenNoPath: an empty file name is an error, never a memory store
// by accident.
func TestOpenNoPath(t *testing.T) {
	if s, err := Open("", Options{}); err == nil {
		s.Close()
		t.Fatal("Open(\"\") succeeded")
	}
}

func TestDurable(t *testing.T) {
	var path string
	storetest.RunDurable(t,
		func(t *testing.T, c *clock.Fake) store.Store {
			path = filepath.Join(t.TempDir(), "moat.db")
			return openT(t, path, c)
		},
		func(t *testing.T, c *clock.Fake) store.Store { return openT(t, path, c) })
}

// wantOpenError checks that Open fails, without panicking, with an error
// naming the file and containing every one of want.
func wantOpenError(t *testing.T, path string, want ...string) {
	t.Helper()
	s, err := Open(path, Options{})
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) succeeded, want an error", path)
	}
	for _, w := range append(want, path) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Open error %q does not say %q", err, w)
		}
	}
}

const invalidAdvice = `is not a valid moat store`

func TestOpenCorrupt(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rnd.Uint32())
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"text", []byte("this is not a database\n")},
		{"random", garbage},
		{"zeros", make([]byte, 64<<10)},
		{"ones", bytes.Repeat([]byte{0xff}, 64<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "moat.db")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			wantOpenError(t, path, invalidAdvice, "moat import")
		})
	}
}

// TestOpenEmptyFile: a 0-byte moat.db (a disk that filled up as the file
// was created, a botched copy) is damage like any other. bbolt treats it
// as new and writes an empty store into it, which silently drops every
// operator entry the real file held; only an absent file makes a new
// store.
func TestOpenEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, path, invalidAdvice, "move it aside", "empty")
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("after a failed Open the file is %v, %v; want it left as it was, empty", fi, err)
	}
}

// TestOpenDamagedPages damages every page but the two meta pages of a real
// store: bbolt panics while reading such a file, and Open must not.
func TestOpenDamagedPages(t *testing.T) {
	for _, fill := range []byte{0x00, 0xff, 0x5a} {
		t.Run(fmt.Sprintf("%#x", fill), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "moat.db")
			s := openT(t, path, clock.Real{})
			for i := range 2000 {
				s.PutTriplet(store.Triplet{Net: netip.MustParsePrefix("192.0.2.0/24"), Sender: fmt.Sprint(i)}, store.Attempt{Count: 1})
			}
			s.PutHost(store.Host{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Reason: "x"})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			page := os.Getpagesize()
			for i := 2 * page; i < len(data); i++ {
				data[i] = fill
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			wantOpenError(t, path, invalidAdvice)
		})
	}
}

func TestOpenForeignBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error {
		b, _ := tx.CreateBucket([]byte("somebody else"))
		return b.Put([]byte("k"), []byte("v"))
	})
	db.Close()
	wantOpenError(t, path, invalidAdvice, "no moat format version")
	// It must not have been changed.
	db, err = bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta) != nil {
			t.Errorf("Open added moat buckets to a foreign file")
		}
		return nil
	})
}

func TestOpenNewerVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	openT(t, path, clock.Real{}).Close()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, []byte{0, 0, 0, 99})
	})
	db.Close()
	wantOpenError(t, path, "format version 99", "reads version 1")
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	s := openT(t, path, clock.Real{})
	defer s.Close()
	wantOpenError(t, path, "another moat process holds it")
}

func TestOpenMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "moat.db")
	_, err := Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), invalidAdvice) {
		t.Errorf("Open in a missing directory = %v, want an error naming the file, not calling it invalid", err)
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "moat.db"), clock.Real{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := s.PutTriplet(store.Triplet{}, store.Attempt{}); err == nil {
		t.Errorf("PutTriplet after Close succeeded")
	}
	if err := s.Add("x", 1); err == nil {
		t.Errorf("Add after Close succeeded")
	}
	if err := s.Flush(context.Background()); err == nil {
		t.Errorf("Flush after Close succeeded")
	}
}

// count returns the number of keys in each bucket of the file.
func count(t *testing.T, s *Store) map[string]int {
	t.Helper()
	n := map[string]int{}
	s.db.View(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			n[string(b)] = tx.Bucket(b).Stats().KeyN
		}
		return nil
	})
	return n
}

func TestPurge(t *testing.T) {
	c := clock.NewFake(time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	s := openT(t, filepath.Join(t.TempDir(), "moat.db"), c)
	defer s.Close()
	exp := c.Now().Add(time.Hour)
	for i := range 100 {
		e := exp
		if i%2 == 0 {
			e = time.Time{}
		}
		s.PutTriplet(store.Triplet{Net: netip.MustParsePrefix("192.0.2.0/24"), Rcpt: fmt.Sprint(i)}, store.Attempt{Count: 1, Expires: e})
		s.PutHost(store.Host{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 32), Expires: e})
		s.Put("k", fmt.Sprint(i), []byte("v"), e)
	}
	s.PutHost(store.Host{Prefix: netip.MustParsePrefix("10.9.0.0/16"), Expires: exp})
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := count(t, s)
	if before["triplets"] != 100 || before["hosts"] != 101 {
		t.Fatalf("on disk before purge: %v", before)
	}
	c.Set(exp)
	s.purge()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := count(t, s)
	// records counts nested keys: the kind bucket plus its 50 records.
	if after["triplets"] != 50 || after["hosts"] != 50 || after["records"] != 51 {
		t.Errorf("on disk after purge: %v", after)
	}
	n := 0
	for i := range s.shards {
		n += len(s.shards[i].m)
	}
	if n != 50 || len(s.hosts) != 50 || len(s.records["k"]) != 50 {
		t.Errorf("in memory after purge: %d triplets, %d hosts, %d records", n, len(s.hosts), len(s.records["k"]))
	}
	if len(s.nets[0]) != 0 {
		t.Errorf("network lengths after purging the only network: %v", s.nets[0])
	}
}

// TestCommitFailureKeepsWrites checks that writes a failed commit could not
// store are written by the next commit that works.
func TestCommitFailureKeepsWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	// No background commit during the test: it calls commit itself.
	s, err := Open(path, Options{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tr := store.Triplet{Net: netip.MustParsePrefix("192.0.2.0/24"), Sender: "a", Rcpt: "b"}
	s.PutTriplet(tr, store.Attempt{Count: 7})
	s.Put("k", "x", []byte("v"), time.Time{})
	s.PutHost(store.Host{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Reason: "r"})
	s.AddTrap("t@example.org")
	s.Add("c", 3)
	// Break the next commit: a closed bbolt file cannot be written.
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.commit(); err == nil {
		t.Fatal("commit on a closed bbolt file succeeded")
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.db = db
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, path, clock.Real{})
	defer s.Close()
	if a, ok, _ := s.Triplet(tr); !ok || a.Count != 7 {
		t.Errorf("triplet after a failed then a good commit = %+v, %v", a, ok)
	}
	if v, ok, _ := s.Get("k", "x"); !ok || string(v) != "v" {
		t.Errorf("record after a failed then a good commit = %q, %v", v, ok)
	}
	if _, ok, _ := s.Host(netip.MustParsePrefix("192.0.2.1/32")); !ok {
		t.Errorf("host lost by a failed commit")
	}
	if tr, _ := s.Traps(); len(tr) != 1 {
		t.Errorf("traps after a failed then a good commit = %q", tr)
	}
	if m, _ := s.Counters(); m["c"] != 3 {
		t.Errorf("counters after a failed then a good commit = %v", m)
	}
}

// TestTripletKeyStable pins the on-disk key: changing how it is computed
// would silently forget every stored triplet.
func TestTripletKeyStable(t *testing.T) {
	k := tripletKey(store.Triplet{Net: netip.MustParsePrefix("192.0.2.0/24"), Sender: "a@example.org", Rcpt: "b@example.net"})
	if got, want := fmt.Sprintf("%x", k), "c630313b181e4bbc862b57feb18c6542"; got != want {
		t.Errorf("tripletKey = %s, want %s", got, want)
	}
}

func TestTimeEncoding(t *testing.T) {
	for _, tm := range []time.Time{
		{},
		time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 0, time.FixedZone("x", 3600)),
	} {
		if got := fromNanos(toNanos(tm)); !got.Equal(tm) || got.IsZero() != tm.IsZero() {
			t.Errorf("round trip of %v = %v", tm, got)
		}
	}
	// Out of range clamps instead of wrapping around.
	if n := toNanos(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); n <= 0 {
		t.Errorf("year 3000 = %d", n)
	}
	if n := toNanos(time.Date(2, 1, 1, 0, 0, 0, 0, time.UTC)); n >= 0 {
		t.Errorf("year 2 = %d", n)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendHost(nil, hval{class: store.Black, reason: "x", first: 1}))
	f.Add(appendTriplet(nil, tval{first: 1, count: 2}))
	f.Add(appendRecord(nil, record{val: []byte("v"), expires: 3}))
	f.Add(appendHostKey(nil, netip.MustParsePrefix("2001:db8::/32")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := decodeHost(b); err == nil && !bytes.Equal(appendHost(nil, h), b) {
			t.Errorf("host does not round-trip")
		}
		if v, err := decodeTriplet(b); err == nil && !bytes.Equal(appendTriplet(nil, v), b) {
			t.Errorf("triplet does not round-trip")
		}
		if r, err := decodeRecord(b); err == nil && !bytes.Equal(appendRecord(nil, r), b) {
			t.Errorf("record does not round-trip")
		}
		if p, err := decodeHostKey(b); err == nil && !p.IsValid() {
			t.Errorf("decodeHostKey gave an invalid prefix without an error")
		}
		decodeCounter(b)
	})
}

// Benchmarks. Lookup and TripletGet are per decision from memory;
// PutTripletSustained reports triplets committed to disk per second,
// including the final Flush; TripletMemory reports heap bytes per triplet
// at a million entries; Open1M is the start-up time with a million on disk:
//
//	go test ./internal/store/bolt -run '^$' -bench 'Lookup|TripletGet'
//	go test ./internal/store/bolt -run '^$' -bench Sustained -benchtime 300000x
//	go test ./internal/store/bolt -run '^$' -bench 'Memory|Open1M' -benchtime 3x

func benchTriplet(i int) store.Triplet {
	return store.Triplet{
		Net:    netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), 0}), 24),
		Sender: fmt.Sprintf("sender%d@example.org", i),
		Rcpt:   "rcpt@example.net",
	}
}

// writeFixture writes n triplets straight into a new store file, in key
// order, so a million-entry file takes a second rather than a minute.
func writeFixture(b *testing.B, path string, n int) {
	b.Helper()
	s := openT(b, path, clock.Real{})
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	type e struct {
		k tkey
		v []byte
	}
	now := time.Now()
	es := make([]e, n)
	for i := range es {
		es[i] = e{tripletKey(benchTriplet(i)), appendTriplet(nil, tval{
			first: toNanos(now), last: toNanos(now), count: 1, expires: toNanos(now.Add(24 * time.Hour)),
		})}
	}
	slices.SortFunc(es, func(a, b e) int { return bytes.Compare(a.k[:], b.k[:]) })
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const chunk = 100_000
	for lo := 0; lo < n; lo += chunk {
		err := db.Update(func(tx *bbolt.Tx) error {
			tb := tx.Bucket(bucketTriplets)
			tb.FillPercent = 1.0 // appending in key order: fill the pages
			for _, x := range es[lo:min(lo+chunk, n)] {
				if err := tb.Put(x.k[:], x.v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	s := openT(b, filepath.Join(b.TempDir(), "moat.db"), clock.Real{})
	defer s.Close()
	const hosts = 50_000
	for i := range hosts {
		s.PutHost(store.Host{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32), Class: store.White, Reason: "greylist retry"})
	}
	for i := range 1000 {
		s.PutHost(store.Host{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 24).Masked(), Class: store.Black})
	}
	s.PutHost(store.Host{Prefix: netip.MustParsePrefix("172.16.0.0/12"), Class: store.Black})
	s.Flush(context.Background())
	var seq atomic.Uint32
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) << 20
		for pb.Next() {
			i++
			var a netip.Addr
			switch i % 3 {
			case 0: // a known host
				a = netip.AddrFrom4([4]byte{10, byte(i >> 16 % hosts), byte(i >> 8), byte(i)})
			case 1: // inside a network
				a = netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
			default: // unknown
				a = netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)})
			}
			s.Lookup(a)
		}
	})
}

func BenchmarkTripletGet(b *testing.B) {
	const n = 1_000_000
	path := filepath.Join(b.TempDir(), "moat.db")
	writeFixture(b, path, n)
	s := openT(b, path, clock.Real{})
	defer s.Close()
	ts := make([]store.Triplet, 4096)
	for i := range ts {
		ts[i] = benchTriplet(i * (n / len(ts)))
	}
	var seq atomic.Uint32
	var miss atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 997
		for pb.Next() {
			i++
			if _, ok, _ := s.Triplet(ts[i%len(ts)]); !ok {
				miss.Add(1)
			}
		}
	})
	if miss.Load() > 0 {
		b.Fatalf("%d lookups missed", miss.Load())
	}
}

func BenchmarkPutTripletSustained(b *testing.B) {
	for _, pre := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("preloaded=%d", pre), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "moat.db")
			if pre > 0 {
				writeFixture(b, path, pre)
			}
			s := openT(b, path, clock.Real{})
			defer s.Close()
			now := time.Now()
			b.ResetTimer()
			for i := range b.N {
				s.PutTriplet(benchTriplet(pre+i), store.Attempt{First: now, Last: now, Count: 1, Expires: now.Add(time.Hour)})
			}
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkTripletMemory reports the heap one triplet entry costs in a
// store holding a million of them.
func BenchmarkTripletMemory(b *testing.B) {
	const n = 1_000_000
	path := filepath.Join(b.TempDir(), "moat.db")
	writeFixture(b, path, n)
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := openT(b, path, clock.Real{})
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
		s.Close()
	}
}

func BenchmarkOpen1M(b *testing.B) {
	const n = 1_000_000
	path := filepath.Join(b.TempDir(), "moat.db")
	writeFixture(b, path, n)
	b.ResetTimer()
	for range b.N {
		s := openT(b, path, clock.Real{})
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
