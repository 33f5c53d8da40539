// Package redis is moat's shared store: several MX hosts keep one memory
// in Redis (a single server, Sentinel or Cluster), so that a sender
// greylisted on one MX passes on another, and a bot trapped on one meets
// the tarpit on all.
//
// Keys live under a prefix and carry native TTLs, so Redis expires entries
// by itself; every value also carries its expiry, and reads drop what has
// expired by moat's clock. Writes are applied to a local overlay at once
// and sent in one pipeline per batch by a single writer (group commit, as
// in the bolt store); Flush waits until Redis has acknowledged them.
//
// Hosts and triplets are read through a local cache that answers for a
// short cache TTL without asking Redis. A moat that changes a host
// publishes the change on a channel under the prefix, and every other moat
// drops its cached copy at once; the TTL bounds what a lost message costs.
//
// When Redis cannot be reached, the store says so once in the log, serves
// hosts and triplets from the cache for as long as StaleTTL, keeps writes
// queued, and answers what it does not know with an error wrapping
// store.ErrUnavailable, which moat turns into a 4xx, never a 5xx. A probe
// notices when Redis is back, logs it once, and everything goes on.
//
// This package never lets a go-redis type out, never answers "not found"
// for something it could not look up, and never waits on a Redis it knows
// to be down.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"moat/internal/clock"
	"moat/internal/store"
)

// Options tune a Store. The zero value is usable.
type Options struct {
	// Prefix starts every key and the change channel, so several
	// deployments (or tests) can share one Redis. Default "moat:".
	Prefix string
	// Timeout bounds dialing Redis and each read or write. Default 1s.
	Timeout time.Duration
	// CacheTTL is how long a cached host or triplet answers without
	// asking Redis: a change made on another moat whose message was lost
	// shows here after at most this long. Default 2s.
	CacheTTL time.Duration
	// StaleTTL is how long a cached entry may still answer while Redis
	// cannot be reached. Default 10m.
	StaleTTL time.Duration
	// CacheSize bounds the entries of each cache (hosts, triplets).
	// Default 200000.
	CacheSize int
	// BatchDelay is how long the writer gathers writes before it sends
	// them in one pipeline. Default 1ms.
	BatchDelay time.Duration
	// HealthInterval is how often the network list is refreshed and, in
	// an outage, Redis is probed. Default 1s.
	HealthInterval time.Duration
	// PurgeInterval is how often expired members leave the indexes.
	// Default 1m.
	PurgeInterval time.Duration
	// MaxQueued bounds the writes kept while Redis is unreachable; more
	// are refused with ErrUnavailable. Default 1000000.
	MaxQueued int
	// Clock decides expiry. Default clock.Real{}.
	Clock clock.Clock
	// Log receives the outage and recovery lines. Default slog.Default().
	Log *slog.Logger
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Prefix == "" {
		o.Prefix = "moat:"
	}
	def(&o.Timeout, time.Second)
	def(&o.CacheTTL, 2*time.Second)
	def(&o.StaleTTL, 10*time.Minute)
	def(&o.BatchDelay, time.Millisecond)
	def(&o.HealthInterval, time.Second)
	def(&o.PurgeInterval, time.Minute)
	if o.CacheSize <= 0 {
		o.CacheSize = 200000
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = 1000000
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

var errClosed = errors.New("store: closed")

// Store is the Redis-backed store.Store. Its methods are safe for
// concurrent use.
type Store struct {
	rdb   goredis.UniversalClient
	where string // the URL without its password, for messages
	wait  int    // replicas that must confirm a write before Flush says it is durable (WAIT)
	opt   Options
	clock clock.Clock
	log   *slog.Logger
	k     keys
	node  string // tells this moat's change messages from the others'

	hosts *cache[netip.Prefix, store.Host]
	trips *cache[store.TripletID, store.Attempt]

	nmu     sync.Mutex
	nets    map[netip.Prefix]struct{}
	netLens atomic.Pointer[[2][]int] // network lengths per family, most specific first

	watch atomic.Pointer[func(netip.Prefix)] // WatchHosts

	down      atomic.Bool
	downSince atomic.Int64 // unix nanoseconds
	short     atomic.Bool  // the last WAIT fell short of wait replicas (logged once)
	epoch     atomic.Uint64

	w writer

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	bg     sync.WaitGroup

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
)

// Open connects to the Redis the URL names:
//
//	redis://[user:password@]host:port[/db][?option=value…]
//	rediss://…                                  the same over TLS
//	redis-sentinel://[user:password@]host:port,host:port[/db]?master_name=NAME[&password=…]
//	redis-cluster://[user:password@]host:port,host:port[?option=value…]
//
// (rediss-sentinel:// and rediss-cluster:// use TLS.) The options are
// go-redis's URL options (dial_timeout, pool_size, …), and moat's own
// wait_replicas=N: how many replicas must confirm a write (Redis's WAIT)
// before Flush reports it durable; 1 by default with Sentinel, whose
// failover promotes a replica, and 0 otherwise. With Sentinel, the user
// and password in the URL are the Sentinels'; the master's go in the
// username and password options.
//
// Open fails only on a URL it cannot use. A Redis that does not answer is
// an outage like any other: logged, served from the cache, retried.
func Open(rawURL string, opt Options) (*Store, error) {
	opt.defaults()
	quietOnce.Do(func() { goredis.SetLogger(quiet{}) })
	rdb, where, wait, err := newClient(rawURL, opt.Timeout)
	if err != nil {
		return nil, err
	}
	var node [8]byte
	rand.Read(node[:])
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		rdb:    rdb,
		where:  where,
		wait:   wait,
		opt:    opt,
		clock:  opt.Clock,
		log:    opt.Log,
		k:      keys{opt.Prefix},
		node:   hex.EncodeToString(node[:]),
		hosts:  newCache[netip.Prefix, store.Host](opt.CacheSize),
		trips:  newCache[store.TripletID, store.Attempt](opt.CacheSize),
		nets:   make(map[netip.Prefix]struct{}),
		ctx:    ctx,
		cancel: cancel,
	}
	s.netLens.Store(&[2][]int{})
	s.w.init()
	if err := s.loadNets(); err != nil {
		s.markDown(err)
	}
	s.bg.Add(4)
	go s.writeLoop()
	go s.healthLoop()
	go s.purgeLoop()
	go s.subscribe()
	return s, nil
}

// unavailable reports whether err means Redis cannot serve now (as
// opposed to "no such key" or a reply that rejects the command).
func unavailable(err error) bool {
	if err == nil || errors.Is(err, goredis.Nil) {
		return false
	}
	var re goredis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS", "BUSY"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true // network, timeout, closed pool
}

// errUnavailable wraps store.ErrUnavailable with the cause.
func (s *Store) errUnavailable(cause error) error {
	if cause == nil {
		return fmt.Errorf("%w: redis %s is unreachable", store.ErrUnavailable, s.where)
	}
	return fmt.Errorf("%w: redis %s: %v", store.ErrUnavailable, s.where, cause)
}

// fail classifies err from a Redis call: an outage marks the store down
// and wraps ErrUnavailable; anything else is returned as it is.
func (s *Store) fail(err error) error {
	if unavailable(err) {
		if s.closed.Load() {
			return errClosed
		}
		s.markDown(err)
		return s.errUnavailable(err)
	}
	return fmt.Errorf("store: redis %s: %w", s.where, err)
}

// markDown notes an outage, logging it once however many requests see it.
func (s *Store) markDown(err error) {
	if s.closed.Load() {
		return
	}
	if s.down.CompareAndSwap(false, true) {
		s.downSince.Store(time.Now().UnixNano())
		s.log.Error("redis: unreachable: serving cached hosts, greylisting (4xx) what is not cached, keeping writes queued until it returns",
			"redis", s.where, "err", err.Error())
	}
}

// markUp ends an outage. Change messages sent meanwhile were lost, so the
// whole cache becomes stale (a new epoch) and the network list is reread.
func (s *Store) markUp() {
	if s.down.CompareAndSwap(true, false) {
		s.epoch.Add(1)
		d := time.Since(time.Unix(0, s.downSince.Load())).Round(time.Millisecond)
		s.log.Info("redis: reachable again", "redis", s.where, "down_for", d.String(), "queued_writes", s.w.queued())
		s.w.kickWriter()
		s.tell(netip.Prefix{})
	}
}

// Down reports whether the store is in an outage, and since when.
func (s *Store) Down() (bool, time.Time) {
	if !s.down.Load() {
		return false, time.Time{}
	}
	return true, time.Unix(0, s.downSince.Load())
}

func (s *Store) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.opt.Timeout)
}

// healthLoop probes Redis during an outage and rereads the network list
// while it is up.
func (s *Store) healthLoop() {
	defer s.bg.Done()
	clock.Every(s.ctx, s.opt.HealthInterval, s.health)
}

// health is one round of the health loop.
func (s *Store) health() {
	if s.down.Load() {
		ctx, cancel := s.opCtx()
		err := s.rdb.Ping(ctx).Err()
		cancel()
		if err == nil && s.loadNets() == nil {
			s.markUp()
		}
		return
	}
	if err := s.loadNets(); err != nil && unavailable(err) {
		s.markDown(err)
	}
	// Writes put back after too few replicas confirmed them wait for no
	// new write to be sent again.
	if s.w.queued() > 0 {
		s.w.kickWriter()
	}
}

// purgeLoop drops expired members from the indexes and old entries from
// the caches.
func (s *Store) purgeLoop() {
	defer s.bg.Done()
	clock.Every(s.ctx, s.opt.PurgeInterval, func() {
		s.hosts.sweep(s.opt.StaleTTL)
		s.trips.sweep(s.opt.StaleTTL)
		if !s.down.Load() {
			if err := s.purge(); err != nil && unavailable(err) {
				s.markDown(err)
			}
		}
	})
}

func (s *Store) purge() error {
	ctx, cancel := context.WithTimeout(s.ctx, 10*s.opt.Timeout)
	defer cancel()
	kinds, err := s.rdb.SMembers(ctx, s.k.kinds()).Result()
	if err != nil {
		return err
	}
	now := fmt.Sprint(s.clock.Now().UnixMilli())
	pipe := s.rdb.Pipeline()
	for _, idx := range append([]string{s.k.hosts(), s.k.nets()}, kindKeys(s.k, kinds)...) {
		pipe.ZRemRangeByScore(ctx, idx, "-inf", now)
	}
	_, err = pipe.Exec(ctx)
	return err
}

func kindKeys(k keys, kinds []string) []string {
	out := make([]string, len(kinds))
	for i, kind := range kinds {
		out[i] = k.kindIndex(kind)
	}
	return out
}

// Close sends what is queued (waiting at most a few timeouts for it) and
// disconnects. Writes that Redis did not take are reported in the error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.closeErr = s.w.close(s)
		s.cancel()
		s.bg.Wait()
		s.rdb.Close()
	})
	return s.closeErr
}
