// Package bolt is moat's embedded store: one bbolt file (data_dir/moat.db)
// behind an in-memory index of everything in it.
//
// Every read is answered from memory. bbolt is read once, at Open, and then
// only written to, by one flusher goroutine that commits every pending change
// in one transaction each FlushInterval (group commit): a write costs a map
// update and a mark in a dirty set, never a disk access. A SIGKILL loses at
// most the writes since the last commit, which the store contract allows;
// callers that cannot afford that call Flush.
//
// This package never blocks a read on the disk, never panics on a damaged
// file (it says which file and what to do), and never lets a bbolt type out.
package bolt

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"

	"moat/internal/clock"
	"moat/internal/prefix"
	"moat/internal/store"
)

// Options tune a Store. The zero value is usable.
type Options struct {
	// FlushInterval is how often pending writes are committed as one bbolt
	// transaction. Longer batches more writes per fsync; shorter loses less
	// on a crash. Default 100ms.
	FlushInterval time.Duration
	// PurgeInterval is how often expired entries are removed from memory
	// and disk. They are invisible from the moment they expire; the purge
	// only reclaims space. Default 1m.
	PurgeInterval time.Duration
	// Clock decides expiry. Default clock.Real{}.
	Clock clock.Clock
	// Log receives errors of background commits, which have no caller to
	// return them to. Default slog.Default().
	Log *slog.Logger
}

const (
	defaultFlushInterval = 100 * time.Millisecond
	defaultPurgeInterval = time.Minute
	// lockTimeout bounds the wait for the file lock, so a second moat on the
	// same data_dir fails with a reason instead of hanging.
	lockTimeout = 2 * time.Second
	// nShards spreads triplets over independent locks, so greylist writes
	// on one connection do not stall reads on the others.
	nShards = 64
)

var errClosed = errors.New("store: closed")

// Store is the bbolt-backed store.Store. Its methods are safe for
// concurrent use.
type Store struct {
	path  string
	db    *bbolt.DB
	clock clock.Clock
	log   *slog.Logger
	opt   Options

	closed atomic.Bool // checked under each memory lock, see Close

	shards [nShards]tripletShard

	hmu       sync.RWMutex
	hosts     map[netip.Prefix]hval
	netCount  [2][129]int // network entries per family and prefix length
	nets      [2][]int    // lengths with entries, most specific first; host lengths excluded
	hostDirty map[netip.Prefix]struct{}

	mu           sync.RWMutex // traps, counters and records
	traps        map[string]struct{}
	trapDirty    map[string]struct{}
	counters     map[string]int64
	counterDirty map[string]struct{}
	records      map[string]map[string]record
	recDirty     map[recKey]struct{}

	flushReq  chan chan error
	quit      chan struct{}
	done      chan struct{}
	failing   bool  // owned by the flusher: last background commit failed
	finalErr  error // set by the flusher before done is closed
	closeOnce sync.Once
	closeErr  error
}

type tripletShard struct {
	mu    sync.RWMutex
	m     map[tkey]tval
	dirty map[tkey]struct{}
	_     [88]byte // one shard per cache line pair: no false sharing of mu
}

type recKey struct{ kind, key string }

var _ store.Store = (*Store)(nil)

// Open opens the store file at path, creating it if needed, and loads all of
// it into memory. It fails within a few seconds, naming the cause, if
// another process holds the file, and with an error that says what to do if
// the file is damaged or not a moat store.
func Open(path string, opt Options) (*Store, error) {
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = defaultFlushInterval
	}
	if opt.PurgeInterval <= 0 {
		opt.PurgeInterval = defaultPurgeInterval
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	s := &Store{
		path:         path,
		db:           db,
		clock:        opt.Clock,
		log:          opt.Log,
		opt:          opt,
		hosts:        make(map[netip.Prefix]hval),
		hostDirty:    make(map[netip.Prefix]struct{}),
		traps:        make(map[string]struct{}),
		trapDirty:    make(map[string]struct{}),
		counters:     make(map[string]int64),
		counterDirty: make(map[string]struct{}),
		records:      make(map[string]map[string]record),
		recDirty:     make(map[recKey]struct{}),
		flushReq:     make(chan chan error),
		quit:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].dirty = make(map[tkey]struct{})
	}
	if err := s.load(); err != nil {
		closeQuietly(db)
		return nil, err
	}
	go s.run()
	return s, nil
}

func invalidFile(path string, cause error) error {
	return fmt.Errorf("store: open %s: file is not a valid moat store (%v): move it aside and start again, or restore a backup with \"moat import\"", path, cause)
}

// openDB opens the bbolt file. bbolt panics on some damaged files instead of
// returning an error; the recover turns that into the same advice as any
// other damage. A truncated file is worse: bbolt reads pages past its end
// through the mmap, which is a SIGBUS, a fatal error that recover cannot
// see unless SetPanicOnFault makes it a panic (that is what it is for).
func openDB(path string) (db *bbolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, invalidFile(path, fmt.Errorf("%v", r))
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: lockTimeout,
		// The map freelist stays fast when many triplets expire and free
		// pages all over the file.
		FreelistType: bbolt.FreelistMapType,
	})
	if err == nil {
		return db, nil
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return nil, fmt.Errorf("store: open %s: another moat process holds it (no lock after %v): stop that process, or give this one its own data_dir", path, lockTimeout)
	case errors.As(err, &pe):
		// Permissions, a missing directory, a full disk: not the file's fault.
		return nil, fmt.Errorf("store: open %s: %w", path, pe.Err)
	}
	return nil, invalidFile(path, err)
}

func closeQuietly(db *bbolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// load checks the format version, creating the buckets of a new file, and
// reads every entry into memory. Entries already expired are left out and
// marked dirty, so the first commit deletes them from disk.
func (s *Store) load() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // a truncated file: see openDB
	defer func() {
		if r := recover(); r != nil {
			err = invalidFile(s.path, fmt.Errorf("%v", r))
		}
	}()
	if err := s.db.Update(s.initFile); err != nil {
		return err
	}
	now := s.now()
	return s.db.View(func(tx *bbolt.Tx) error {
		var err error
		bad := func(what string, e error) error {
			return invalidFile(s.path, fmt.Errorf("%s: %w", what, e))
		}
		err = tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
			p, err := decodeHostKey(k)
			if err != nil {
				return bad("hosts", err)
			}
			h, err := decodeHost(v)
			if err != nil {
				return bad("host "+p.String(), err)
			}
			if !live(h.expires, now) {
				s.hostDirty[p] = struct{}{}
				return nil
			}
			if _, ok := s.hosts[p]; !ok {
				s.addNet(p)
			}
			s.hosts[p] = h
			return nil
		})
		if err != nil {
			return err
		}

		tb := tx.Bucket(bucketTriplets)
		for i := range s.shards {
			s.shards[i].m = make(map[tkey]tval)
		}
		err = tb.ForEach(func(k, v []byte) error {
			if len(k) != len(tkey{}) {
				return bad("triplets", errFormat)
			}
			t, err := decodeTriplet(v)
			if err != nil {
				return bad("triplets", err)
			}
			key := tkey(k)
			sh := &s.shards[key[0]%nShards]
			if !live(t.expires, now) {
				sh.dirty[key] = struct{}{}
				return nil
			}
			sh.m[key] = t
			return nil
		})
		if err != nil {
			return err
		}

		err = tx.Bucket(bucketTraps).ForEach(func(k, _ []byte) error {
			s.traps[string(k)] = struct{}{}
			return nil
		})
		if err != nil {
			return err
		}

		err = tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			n, err := decodeCounter(v)
			if err != nil {
				return bad("counter "+string(k), err)
			}
			s.counters[string(k)] = n
			return nil
		})
		if err != nil {
			return err
		}

		rb := tx.Bucket(bucketRecords)
		return rb.ForEachBucket(func(kindb []byte) error {
			kind := string(kindb)
			m := make(map[string]record)
			err := rb.Bucket(kindb).ForEach(func(k, v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					return bad("records "+kind, err)
				}
				if !live(r.expires, now) {
					s.recDirty[recKey{kind, string(k)}] = struct{}{}
					return nil
				}
				m[string(k)] = r
				return nil
			})
			if len(m) > 0 {
				s.records[kind] = m
			}
			return err
		})
	})
}

func (s *Store) initFile(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		// A file with buckets but no meta is another program's bbolt
		// file: leave it alone.
		if k, _ := tx.Cursor().First(); k != nil {
			return invalidFile(s.path, errors.New("it has no moat format version"))
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucket(b); err != nil {
				return fmt.Errorf("store: create %s: %w", s.path, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint32(nil, formatVersion))
	}
	v := meta.Get(keyVersion)
	if len(v) != 4 {
		return invalidFile(s.path, errors.New("its format version is unreadable"))
	}
	if ver := binary.BigEndian.Uint32(v); ver != formatVersion {
		return fmt.Errorf("store: open %s: format version %d, this moat reads version %d: run the moat that wrote it, or move the file aside and restore with \"moat import\"", s.path, ver, formatVersion)
	}
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("store: open %s: %w", s.path, err)
		}
	}
	return nil
}

func (s *Store) now() int64 { return toNanos(s.clock.Now()) }

func fam(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// addNet and delNet keep the per-family list of network lengths in use, so
// Lookup probes only lengths that have entries. Called with hmu held, once
// per prefix added to or removed from hosts.
func (s *Store) addNet(p netip.Prefix) {
	if p.Bits() == p.Addr().BitLen() {
		return
	}
	f := fam(p.Addr())
	s.netCount[f][p.Bits()]++
	if s.netCount[f][p.Bits()] == 1 {
		s.rebuildNets(f)
	}
}

func (s *Store) delNet(p netip.Prefix) {
	if p.Bits() == p.Addr().BitLen() {
		return
	}
	f := fam(p.Addr())
	s.netCount[f][p.Bits()]--
	if s.netCount[f][p.Bits()] == 0 {
		s.rebuildNets(f)
	}
}

func (s *Store) rebuildNets(f int) {
	var lens []int
	for bits := len(s.netCount[f]) - 1; bits >= 0; bits-- {
		if s.netCount[f][bits] > 0 {
			lens = append(lens, bits)
		}
	}
	s.nets[f] = lens
}

// Lookup returns the host entry of addr, else the most specific unexpired
// network that contains it.
func (s *Store) Lookup(addr netip.Addr) (store.Host, bool, error) {
	if !addr.IsValid() {
		return store.Host{}, false, nil
	}
	addr = addr.Unmap().WithZone("")
	now := s.now()
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	p := prefix.Host(addr)
	if v, ok := s.hosts[p]; ok && live(v.expires, now) {
		return v.host(p), true, nil
	}
	for _, bits := range s.nets[fam(addr)] {
		p, _ := addr.Prefix(bits)
		if v, ok := s.hosts[p]; ok && live(v.expires, now) {
			return v.host(p), true, nil
		}
	}
	return store.Host{}, false, nil
}

// Host returns the entry stored under exactly p.
func (s *Store) Host(p netip.Prefix) (store.Host, bool, error) {
	p = prefix.Norm(p)
	now := s.now()
	s.hmu.RLock()
	v, ok := s.hosts[p]
	s.hmu.RUnlock()
	if !ok || !live(v.expires, now) {
		return store.Host{}, false, nil
	}
	return v.host(p), true, nil
}

// PutHost stores h under its prefix with the host bits cleared.
func (s *Store) PutHost(h store.Host) error {
	p := prefix.Norm(h.Prefix)
	if !p.IsValid() {
		return fmt.Errorf("store: put host: invalid prefix %q", h.Prefix)
	}
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	s.putHostLocked(p, h)
	return nil
}

// UpdateHost runs fn under the hosts lock: nothing else writes p between
// fn's read and its write.
func (s *Store) UpdateHost(p netip.Prefix, fn func(store.Host, bool) (store.Host, bool)) (store.Host, bool, error) {
	p = prefix.Norm(p)
	if !p.IsValid() {
		return store.Host{}, false, fmt.Errorf("store: update host: invalid prefix %q", p)
	}
	now := s.now()
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed.Load() {
		return store.Host{}, false, errClosed
	}
	var old store.Host
	v, ok := s.hosts[p]
	if ok = ok && live(v.expires, now); ok {
		old = v.host(p)
	}
	h, write := fn(old, ok)
	if !write {
		return old, false, nil
	}
	h.Prefix = p
	s.putHostLocked(p, h)
	return h, true, nil
}

// putHostLocked stores h under p; s.hmu is held.
func (s *Store) putHostLocked(p netip.Prefix, h store.Host) {
	if _, ok := s.hosts[p]; !ok {
		s.addNet(p)
	}
	s.hosts[p] = hval{
		class:   h.Class,
		source:  h.Source,
		reason:  h.Reason,
		first:   toNanos(h.First),
		last:    toNanos(h.Last),
		expires: toNanos(h.Expires),
	}
	s.hostDirty[p] = struct{}{}
}

// DeleteHost forgets p; ErrNotFound if there was no unexpired entry.
func (s *Store) DeleteHost(p netip.Prefix) error {
	p = prefix.Norm(p)
	now := s.now()
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	v, ok := s.hosts[p]
	if !ok {
		return store.ErrNotFound
	}
	delete(s.hosts, p)
	s.delNet(p)
	s.hostDirty[p] = struct{}{}
	if !live(v.expires, now) {
		return store.ErrNotFound
	}
	return nil
}

// Hosts calls fn for every unexpired entry, in address order. fn runs on a
// snapshot, without locks held, so it may call the store.
func (s *Store) Hosts(fn func(store.Host) bool) error {
	now := s.now()
	s.hmu.RLock()
	hs := make([]store.Host, 0, len(s.hosts))
	for p, v := range s.hosts {
		if live(v.expires, now) {
			hs = append(hs, v.host(p))
		}
	}
	s.hmu.RUnlock()
	slices.SortFunc(hs, func(a, b store.Host) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
	for _, h := range hs {
		if !fn(h) {
			break
		}
	}
	return nil
}

func (s *Store) shard(k tkey) *tripletShard { return &s.shards[k[0]%nShards] }

// Triplet returns what the greylist remembers of t.
func (s *Store) Triplet(t store.Triplet) (store.Attempt, bool, error) {
	k := tripletKey(t)
	sh := s.shard(k)
	sh.mu.RLock()
	v, ok := sh.m[k]
	sh.mu.RUnlock()
	if !ok || !live(v.expires, s.now()) {
		return store.Attempt{}, false, nil
	}
	return store.Attempt{
		First:   fromNanos(v.first),
		Last:    fromNanos(v.last),
		Count:   v.count,
		Expires: fromNanos(v.expires),
	}, true, nil
}

// PutTriplet stores a for t.
func (s *Store) PutTriplet(t store.Triplet, a store.Attempt) error {
	return s.PutTripletID(t.ID(), a)
}

// PutTripletID stores a under id (import).
func (s *Store) PutTripletID(id store.TripletID, a store.Attempt) error {
	k := tkey(id)
	v := tval{
		first:   toNanos(a.First),
		last:    toNanos(a.Last),
		expires: toNanos(a.Expires),
		count:   a.Count,
	}
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	sh.m[k] = v
	sh.dirty[k] = struct{}{}
	return nil
}

// Traps returns the run-time trap addresses, sorted.
func (s *Store) Traps() ([]string, error) {
	s.mu.RLock()
	ts := make([]string, 0, len(s.traps))
	for t := range s.traps {
		ts = append(ts, t)
	}
	s.mu.RUnlock()
	slices.Sort(ts)
	return ts, nil
}

// AddTrap stores a trap address.
func (s *Store) AddTrap(addr string) error {
	if addr == "" {
		return errors.New("store: add trap: empty address")
	}
	if len(addr) > bbolt.MaxKeySize {
		return fmt.Errorf("store: add trap: address of %d bytes is too long", len(addr))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	s.traps[addr] = struct{}{}
	s.trapDirty[addr] = struct{}{}
	return nil
}

// DelTrap removes a trap address; ErrNotFound if there was none.
func (s *Store) DelTrap(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	if _, ok := s.traps[addr]; !ok {
		return store.ErrNotFound
	}
	delete(s.traps, addr)
	s.trapDirty[addr] = struct{}{}
	return nil
}

// Add adds delta to the named counter.
func (s *Store) Add(counter string, delta int64) error {
	if counter == "" || len(counter) > bbolt.MaxKeySize {
		return fmt.Errorf("store: add: bad counter name %q", counter)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	s.counters[counter] += delta
	s.counterDirty[counter] = struct{}{}
	return nil
}

// Counters returns a copy of all counters.
func (s *Store) Counters() (map[string]int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := make(map[string]int64, len(s.counters))
	for k, v := range s.counters {
		m[k] = v
	}
	return m, nil
}

func checkRecord(op, kind, key string) error {
	switch {
	case kind == "" || len(kind) > bbolt.MaxKeySize:
		return fmt.Errorf("store: %s: bad record kind %q", op, kind)
	case key == "" || len(key) > bbolt.MaxKeySize:
		return fmt.Errorf("store: %s %s: bad record key %q", op, kind, key)
	}
	return nil
}

// Get returns a copy of the record kind/key.
func (s *Store) Get(kind, key string) ([]byte, bool, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.records[kind][key]
	if !ok || !live(r.expires, now) {
		return nil, false, nil
	}
	return append([]byte{}, r.val...), true, nil
}

// Put stores a copy of val as the record kind/key.
func (s *Store) Put(kind, key string, val []byte, expires time.Time) error {
	if err := checkRecord("put", kind, key); err != nil {
		return err
	}
	r := record{val: append([]byte{}, val...), expires: toNanos(expires)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	m := s.records[kind]
	if m == nil {
		m = make(map[string]record)
		s.records[kind] = m
	}
	m[key] = r
	s.recDirty[recKey{kind, key}] = struct{}{}
	return nil
}

// Delete removes the record kind/key; ErrNotFound if there was none.
func (s *Store) Delete(kind, key string) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	m := s.records[kind]
	r, ok := m[key]
	if !ok {
		return store.ErrNotFound
	}
	delete(m, key)
	if len(m) == 0 {
		delete(s.records, kind)
	}
	s.recDirty[recKey{kind, key}] = struct{}{}
	if !live(r.expires, now) {
		return store.ErrNotFound
	}
	return nil
}

// Scan calls fn for every unexpired record of kind, in key order. fn runs
// on a snapshot, without locks held, so it may call the store.
func (s *Store) Scan(kind string, fn func(key string, val []byte) bool) error {
	now := s.now()
	type kv struct {
		k string
		v []byte
	}
	s.mu.RLock()
	m := s.records[kind]
	rs := make([]kv, 0, len(m))
	for k, r := range m {
		if live(r.expires, now) {
			rs = append(rs, kv{k, append([]byte{}, r.val...)})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(rs, func(a, b kv) int { return cmp.Compare(a.k, b.k) })
	for _, r := range rs {
		if !fn(r.k, r.v) {
			break
		}
	}
	return nil
}

// Flush asks the flusher for an immediate commit and waits for it. Every
// write made before the call is in that commit, because the flusher takes
// the dirty sets only after it has received the request.
func (s *Store) Flush(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	r := make(chan error, 1)
	select {
	case s.flushReq <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return s.finalErr
	}
	select {
	case err := <-r:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close commits what is pending and closes the file. Writes racing with
// Close either make it into the last commit or fail: they check closed
// under the same lock the last commit takes to collect them.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		<-s.done
		err := s.finalErr
		if cerr := s.db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("store: close %s: %w", s.path, cerr)
		}
		s.closeErr = err
	})
	return s.closeErr
}

// run is the flusher: the only goroutine that writes to bbolt.
func (s *Store) run() {
	defer close(s.done)
	flush := time.NewTicker(s.opt.FlushInterval)
	defer flush.Stop()
	purge := time.NewTicker(s.opt.PurgeInterval)
	defer purge.Stop()
	var reqs []chan error
	for {
		select {
		case <-s.quit:
			s.finalErr = s.commit()
			return
		case r := <-s.flushReq:
			reqs = append(reqs[:0], r)
		more:
			for {
				select {
				case r := <-s.flushReq:
					reqs = append(reqs, r)
				default:
					break more
				}
			}
			err := s.commit()
			for _, r := range reqs {
				r <- err
			}
		case <-flush.C:
			s.background(s.commit())
		case <-purge.C:
			s.purge()
			s.background(s.commit())
		}
	}
}

// background logs a failing background commit once, and its recovery, so
// a full disk does not write ten log lines a second.
func (s *Store) background(err error) {
	switch {
	case err != nil && !s.failing:
		s.log.Error("store: commit failed; writes are kept in memory and retried", "file", s.path, "err", err)
	case err == nil && s.failing:
		s.log.Info("store: commit works again", "file", s.path)
	}
	s.failing = err != nil
}

// purge drops expired entries from memory and marks them dirty, so the
// next commit deletes them from disk in the same order as any other write.
func (s *Store) purge() {
	now := s.now()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, v := range sh.m {
			if !live(v.expires, now) {
				delete(sh.m, k)
				sh.dirty[k] = struct{}{}
			}
		}
		sh.mu.Unlock()
	}
	s.hmu.Lock()
	for p, v := range s.hosts {
		if !live(v.expires, now) {
			delete(s.hosts, p)
			s.delNet(p)
			s.hostDirty[p] = struct{}{}
		}
	}
	s.hmu.Unlock()
	s.mu.Lock()
	for kind, m := range s.records {
		for k, r := range m {
			if !live(r.expires, now) {
				delete(m, k)
				s.recDirty[recKey{kind, k}] = struct{}{}
			}
		}
		if len(m) == 0 {
			delete(s.records, kind)
		}
	}
	s.mu.Unlock()
}

// kv is one change to write: v nil deletes k.
type kv struct{ k, v []byte }

type tkv struct {
	k   tkey
	v   [tripletLen]byte
	del bool
}

// batch is one commit's worth of changes, taken from the dirty sets. The
// sets themselves are kept so a failed commit can put them back.
type batch struct {
	n        int
	hosts    []kv
	triplets []tkv
	traps    []kv
	counters []kv
	records  map[string][]kv

	hostDirty    map[netip.Prefix]struct{}
	tripDirty    [nShards]map[tkey]struct{}
	trapDirty    map[string]struct{}
	counterDirty map[string]struct{}
	recDirty     map[recKey]struct{}
}

// take swaps out every dirty set and encodes the current value of each
// dirty key (or a deletion if it is gone). Reading the value at commit time
// rather than queueing each write means a key written many times between
// commits is written once, and disk always ends up with what memory holds.
func (s *Store) take() *batch {
	b := &batch{records: make(map[string][]kv)}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if len(sh.dirty) > 0 {
			d := sh.dirty
			sh.dirty = make(map[tkey]struct{})
			b.tripDirty[i] = d
			for k := range d {
				e := tkv{k: k}
				if v, ok := sh.m[k]; ok {
					appendTriplet(e.v[:0], v)
				} else {
					e.del = true
				}
				b.triplets = append(b.triplets, e)
			}
		}
		sh.mu.Unlock()
	}
	b.n += len(b.triplets)

	s.hmu.Lock()
	b.hostDirty, s.hostDirty = s.hostDirty, make(map[netip.Prefix]struct{})
	for p := range b.hostDirty {
		e := kv{k: appendHostKey(nil, p)}
		if v, ok := s.hosts[p]; ok {
			e.v = appendHost(nil, v)
		}
		b.hosts = append(b.hosts, e)
	}
	s.hmu.Unlock()
	b.n += len(b.hosts)

	s.mu.Lock()
	b.trapDirty, s.trapDirty = s.trapDirty, make(map[string]struct{})
	for t := range b.trapDirty {
		e := kv{k: []byte(t)}
		if _, ok := s.traps[t]; ok {
			e.v = []byte{}
		}
		b.traps = append(b.traps, e)
	}
	b.counterDirty, s.counterDirty = s.counterDirty, make(map[string]struct{})
	for c := range b.counterDirty {
		b.counters = append(b.counters, kv{k: []byte(c), v: binary.BigEndian.AppendUint64(nil, uint64(s.counters[c]))})
	}
	b.recDirty, s.recDirty = s.recDirty, make(map[recKey]struct{})
	for rk := range b.recDirty {
		e := kv{k: []byte(rk.key)}
		if r, ok := s.records[rk.kind][rk.key]; ok {
			e.v = appendRecord(nil, r)
		}
		b.records[rk.kind] = append(b.records[rk.kind], e)
	}
	s.mu.Unlock()
	b.n += len(b.traps) + len(b.counters) + len(b.recDirty)
	return b
}

// putBack returns a failed batch's keys to the dirty sets, so the next
// commit writes them (with whatever value memory holds by then).
func (s *Store) putBack(b *batch) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k := range b.tripDirty[i] {
			sh.dirty[k] = struct{}{}
		}
		sh.mu.Unlock()
	}
	s.hmu.Lock()
	for p := range b.hostDirty {
		s.hostDirty[p] = struct{}{}
	}
	s.hmu.Unlock()
	s.mu.Lock()
	for k := range b.trapDirty {
		s.trapDirty[k] = struct{}{}
	}
	for k := range b.counterDirty {
		s.counterDirty[k] = struct{}{}
	}
	for k := range b.recDirty {
		s.recDirty[k] = struct{}{}
	}
	s.mu.Unlock()
}

// commit writes everything dirty in one bbolt transaction: one fsync for
// the whole batch, whatever its size.
func (s *Store) commit() error {
	b := s.take()
	if b.n == 0 {
		return nil
	}
	// bbolt inserts sorted keys far faster than random ones: each leaf
	// is visited once, and a new key lands at the end of its node instead
	// of shifting the node's entries.
	slices.SortFunc(b.triplets, func(x, y tkv) int { return bytes.Compare(x.k[:], y.k[:]) })
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := apply(tx.Bucket(bucketHosts), b.hosts); err != nil {
			return err
		}
		tb := tx.Bucket(bucketTriplets)
		for i := range b.triplets {
			e := &b.triplets[i]
			var err error
			if e.del {
				err = tb.Delete(e.k[:])
			} else {
				err = tb.Put(e.k[:], e.v[:])
			}
			if err != nil {
				return err
			}
		}
		if err := apply(tx.Bucket(bucketTraps), b.traps); err != nil {
			return err
		}
		if err := apply(tx.Bucket(bucketCounters), b.counters); err != nil {
			return err
		}
		rb := tx.Bucket(bucketRecords)
		for kind, kvs := range b.records {
			kb := rb.Bucket([]byte(kind))
			if kb == nil {
				if !slices.ContainsFunc(kvs, func(e kv) bool { return e.v != nil }) {
					continue // only deletions in a kind never written
				}
				var err error
				if kb, err = rb.CreateBucket([]byte(kind)); err != nil {
					return err
				}
			}
			if err := apply(kb, kvs); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.putBack(b)
		return fmt.Errorf("store: commit to %s: %w", s.path, err)
	}
	return nil
}

func apply(b *bbolt.Bucket, kvs []kv) error {
	// Unsorted inserts into one bbolt node cost a memmove each, quadratic
	// in the batch: sort first, as for triplets.
	slices.SortFunc(kvs, func(x, y kv) int { return bytes.Compare(x.k, y.k) })
	for _, e := range kvs {
		var err error
		if e.v == nil {
			err = b.Delete(e.k)
		} else {
			err = b.Put(e.k, e.v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
