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
//
// Memory is the same store without its file, for simulations that build a
// store per run and must not pay for a disk they do not need.
package bolt

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"

	"moat/internal/clock"
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

	mu           sync.RWMutex // traps, counters, records and tallies
	traps        map[string]struct{}
	trapDirty    map[string]struct{}
	counters     map[string]int64
	counterDirty map[string]struct{}
	records      map[string]map[string]record
	recDirty     map[recKey]struct{}
	tallies      map[string]*tally
	tallyDirty   map[string]struct{}

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
	if path == "" {
		return nil, errors.New("store: open: no file name")
	}
	return open(path, opt)
}

// open opens the store at path, or a memory store when path is "".
func open(path string, opt Options) (*Store, error) {
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
	var db *bbolt.DB
	if path != "" {
		var err error
		if db, err = openDB(path, false); err != nil {
			return nil, err
		}
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
		tallies:      make(map[string]*tally),
		tallyDirty:   make(map[string]struct{}),
		flushReq:     make(chan chan error),
		quit:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[tkey]tval)
		s.shards[i].dirty = make(map[tkey]struct{})
	}
	if db != nil {
		if err := s.load(); err != nil {
			closeQuietly(db)
			return nil, err
		}
	}
	go s.run()
	return s, nil
}

// Memory returns a store that keeps everything in memory only, with no
// file: the same store, minus its disk. It is for simulations (moat
// evaluate), which build many stores that must not outlive them; nothing
// in it survives Close.
func Memory(opt Options) *Store {
	s, err := open("", opt)
	if err != nil {
		panic("bolt: a memory store cannot fail to open: " + err.Error())
	}
	return s
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
		if s.db == nil {
			// A memory store has no file.
		} else if cerr := s.db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("store: close %s: %w", s.path, cerr)
		}
		s.closeErr = err
	})
	return s.closeErr
}

func (s *Store) now() int64 { return toNanos(s.clock.Now()) }
