package redis

import (
	"sync"
	"time"
)

// cache is the local copy of what Redis answered for hosts or triplets,
// found or not. An entry is fresh for CacheTTL after it was fetched or
// written here, unless a change message from another moat or a Redis
// outage made it stale first; a stale entry still answers, for StaleTTL,
// while Redis cannot be reached.
//
// Every local write and every invalidation takes a new sequence number.
// A fetch notes the number before it asks Redis and installs its answer
// only if the entry has not changed since: an answer that left Redis
// before a newer write or invalidation must not replace it.
type cache[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]centry[V]
	seq uint64
	max int
}

type centry[V any] struct {
	v     V
	ok    bool   // false: Redis has nothing under this key
	at    int64  // monotonic nanoseconds of the fetch or write
	stale bool   // another moat changed it: ask Redis again
	epoch uint64 // the store's epoch then; a Redis outage starts a new one
	seq   uint64
}

// start is the origin of the monotonic clock the cache uses: real time,
// whatever clock the store decides expiry by, because freshness is about
// how long ago another moat may have changed something.
var start = time.Now()

func mono() int64 { return int64(time.Since(start)) + 1 }

func newCache[K comparable, V any](max int) *cache[K, V] {
	return &cache[K, V]{m: make(map[K]centry[V]), max: max}
}

// get returns the entry for k.
func (c *cache[K, V]) get(k K) (centry[V], bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	return e, ok
}

// mark returns the sequence number a fetch must quote to install.
func (c *cache[K, V]) mark() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.seq
}

// write records a local write: it is fresh at once.
func (c *cache[K, V]) write(k K, v V, ok bool, epoch uint64) {
	c.mu.Lock()
	c.seq++
	c.makeRoom(k)
	c.m[k] = centry[V]{v: v, ok: ok, at: mono(), epoch: epoch, seq: c.seq}
	c.mu.Unlock()
}

// install records what a fetch that began at mark found, unless the entry
// changed since.
func (c *cache[K, V]) install(k K, v V, ok bool, epoch, mark uint64) {
	c.mu.Lock()
	if e, there := c.m[k]; !there || e.seq <= mark {
		c.makeRoom(k)
		c.m[k] = centry[V]{v: v, ok: ok, at: mono(), epoch: epoch, seq: e.seq}
	}
	c.mu.Unlock()
}

// invalidate makes k's entry stale, keeping it as a fallback.
func (c *cache[K, V]) invalidate(k K) {
	c.mu.Lock()
	c.seq++
	if e, ok := c.m[k]; ok {
		e.stale, e.seq = true, c.seq
		c.m[k] = e
	}
	c.mu.Unlock()
}

// makeRoom drops about a sixteenth of the entries, in the map's random
// order, when the cache is full and k is new. Called with mu held.
func (c *cache[K, V]) makeRoom(k K) {
	if len(c.m) < c.max {
		return
	}
	if _, ok := c.m[k]; ok {
		return
	}
	n := c.max/16 + 1
	for key := range c.m {
		delete(c.m, key)
		if n--; n == 0 {
			break
		}
	}
}

// sweep forgets entries older than keep: they are no use even as a
// fallback.
func (c *cache[K, V]) sweep(keep time.Duration) {
	limit := mono() - int64(keep)
	c.mu.Lock()
	for k, e := range c.m {
		if e.at < limit {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}

// fresh reports whether e may answer without asking Redis.
func (e centry[V]) fresh(now int64, ttl time.Duration, epoch uint64) bool {
	return !e.stale && e.epoch == epoch && now-e.at < int64(ttl)
}

// usable reports whether e may answer while Redis cannot be reached.
func (e centry[V]) usable(now int64, keep time.Duration) bool {
	return now-e.at < int64(keep)
}
