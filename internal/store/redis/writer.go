package redis

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"moat/internal/store"
)

// write is one queued change of one Redis key (or one trap address). A
// newer change of the same key replaces it in the queue: Redis only ever
// needs the last value, as with the bolt store's dirty sets.
type write struct {
	key    string    // the value's key; "" for a trap
	val    []byte    // nil deletes
	exp    time.Time // the value's expiry by moat's clock; zero: never
	index  string    // sorted set listing the key ("" none)
	member string    // its member there
	kind   string    // record kind to add to the kinds set on a put
	trap   string    // trap address to add (val non-nil) or remove
	prefix netip.Prefix
	hostOp bool // announce the change of prefix to the other moats
	netOp  bool // keep the nets index in step too
}

// writer queues writes and sends them to Redis in pipelines.
type writer struct {
	mu       sync.Mutex
	queue    map[string]*write // by key, or "\x00trap\x00"+address
	counters map[string]int64
	inflight map[string]*write // the batch being sent: still the overlay for reads
	inCount  map[string]int64
	seq      uint64 // writes accepted so far
	done     uint64 // writes acknowledged by Redis (or dropped, see commit)
	failed   uint64 // highest seq of a batch that failed for an outage or too few replicas
	failWhy  error  // why that batch failed, for Flush to say
	closing  bool
	changed  chan struct{} // closed and replaced when done or failed move

	kick     chan struct{}
	quit     chan struct{}
	finished chan struct{}
	finalErr error
}

func (w *writer) init() {
	w.queue = make(map[string]*write)
	w.counters = make(map[string]int64)
	w.changed = make(chan struct{})
	w.kick = make(chan struct{}, 1)
	w.quit = make(chan struct{})
	w.finished = make(chan struct{})
}

func (w *writer) kickWriter() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue) + len(w.counters)
}

func trapKey(addr string) string { return "\x00trap\x00" + addr }

// enqueue accepts a write; the store's overlay and caches are updated by
// the caller.
func (s *Store) enqueue(ck string, wr *write) error {
	w := &s.w
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return errClosed
	}
	if _, there := w.queue[ck]; !there && len(w.queue) >= s.opt.MaxQueued {
		w.mu.Unlock()
		return s.errUnavailable(fmt.Errorf("%d writes already wait for Redis", s.opt.MaxQueued))
	}
	w.queue[ck] = wr
	w.seq++
	w.mu.Unlock()
	w.kickWriter()
	return nil
}

func (s *Store) enqueueAdd(counter string, delta int64) error {
	w := &s.w
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return errClosed
	}
	w.counters[counter] += delta
	w.seq++
	w.mu.Unlock()
	w.kickWriter()
	return nil
}

// pending returns the queued or in-flight write of key ck, if any: it is
// newer than anything Redis can answer.
func (s *Store) pending(ck string) (*write, bool) {
	w := &s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if wr, ok := w.queue[ck]; ok {
		return wr, true
	}
	wr, ok := w.inflight[ck]
	return wr, ok
}

// Flush returns when every write accepted before it was called has been
// acknowledged by Redis, or with an error wrapping ErrUnavailable when
// Redis cannot take them now (they stay queued).
func (s *Store) Flush(ctx context.Context) error {
	w := &s.w
	w.mu.Lock()
	target := w.seq
	for {
		if w.done >= target {
			w.mu.Unlock()
			return nil
		}
		if w.failed >= target || s.down.Load() {
			n := len(w.queue) + len(w.counters) + len(w.inflight)
			why := w.failWhy
			w.mu.Unlock()
			if why != nil && !s.down.Load() {
				return fmt.Errorf("%w: redis %s: %v (%d writes wait to be sent again)", store.ErrUnavailable, s.where, why, n)
			}
			return s.errUnavailable(fmt.Errorf("%d writes wait for it", n))
		}
		ch := w.changed
		w.mu.Unlock()
		w.kickWriter()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.finished:
			w.mu.Lock()
			if w.done >= target {
				w.mu.Unlock()
				return nil
			}
			w.mu.Unlock()
			return errClosed
		}
		w.mu.Lock()
	}
}

// writeLoop is the only goroutine that writes to Redis.
func (s *Store) writeLoop() {
	defer s.bg.Done()
	defer close(s.w.finished)
	for {
		select {
		case <-s.w.quit:
			s.w.finalErr = s.drain()
			return
		case <-s.w.kick:
		}
		if s.down.Load() {
			continue // the health loop kicks again when Redis is back
		}
		// A moment's wait gathers the writes of concurrent sessions
		// into one pipeline.
		time.Sleep(s.opt.BatchDelay)
		for s.commit() {
		}
	}
}

// drain is the writer's last act: send what is queued, trying for a few
// timeouts even if Redis seemed down.
func (s *Store) drain() error {
	deadline := time.Now().Add(3 * s.opt.Timeout)
	for {
		more := s.commit()
		n := s.w.queued()
		if n == 0 {
			return nil
		}
		if !more && time.Now().After(deadline) {
			return fmt.Errorf("store: redis %s: %d writes not written: %w", s.where, n, s.errUnavailable(nil))
		}
		if !more {
			time.Sleep(s.opt.Timeout / 10)
		}
	}
}

// commit sends one batch. It reports whether it made progress and more
// may be queued.
func (s *Store) commit() bool {
	w := &s.w
	w.mu.Lock()
	if len(w.queue) == 0 && len(w.counters) == 0 {
		w.mu.Unlock()
		return false
	}
	batch, counters, upto := w.queue, w.counters, w.seq
	w.queue, w.counters = make(map[string]*write), make(map[string]int64)
	w.inflight, w.inCount = batch, counters
	w.mu.Unlock()

	ctx, cancel := context.WithTimeout(s.ctx, 5*s.opt.Timeout)
	defer cancel()
	if s.closed.Load() {
		// s.ctx still lives until the writer is done.
		ctx, cancel = context.WithTimeout(context.Background(), 5*s.opt.Timeout)
		defer cancel()
	}
	now := s.clock.Now()
	pipe := s.rdb.Pipeline()
	var events strings.Builder
	for _, wr := range batch {
		s.pipeWrite(ctx, pipe, wr, now)
		if wr.hostOp {
			op := byte('+')
			if wr.val == nil {
				op = '-'
			}
			events.WriteByte('\n')
			events.WriteByte(op)
			events.WriteString(wr.prefix.String())
		}
	}
	for name, d := range counters {
		pipe.HIncrBy(ctx, s.k.counters(), name, d)
	}
	if events.Len() > 0 {
		// After the writes, on the same connection: a moat that hears
		// of a change and asks Redis finds it.
		pipe.Publish(ctx, s.k.events(), s.node+events.String())
	}
	// WAIT, last on the same connection, returns once that many
	// replicas have every write above (and everything before it). The
	// whole pipeline is read within the request timeout, so the
	// replicas get half of it.
	var wait *goredis.Cmd
	if s.wait > 0 {
		wait = pipe.Do(ctx, "wait", s.wait, s.waitTimeout().Milliseconds())
	}
	_, err := pipe.Exec(ctx)
	short := s.shortOf(wait, err)

	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight, w.inCount = nil, nil
	if err != nil && unavailable(err) {
		// Put the batch back under anything newer, and wait for Redis.
		for k, wr := range batch {
			if _, newer := w.queue[k]; !newer {
				w.queue[k] = wr
			}
		}
		for name, d := range counters {
			w.counters[name] += d
		}
		w.failed, w.failWhy = upto, nil
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
		s.fail(err)
		w.mu.Lock()
		return false
	}
	if short != nil {
		// The master took the batch, too few replicas have it: a
		// failover now would lose it. Send it again until they do
		// (the same values again change nothing), except the counter
		// increments, which would count twice, and are statistics.
		for k, wr := range batch {
			if _, newer := w.queue[k]; !newer {
				w.queue[k] = wr
			}
		}
		w.failed, w.failWhy = upto, short
		close(w.changed)
		w.changed = make(chan struct{})
		return false
	}
	if err != nil {
		// Redis refused a command (a key of another type under our
		// prefix?): retrying cannot help. Say so and go on.
		s.log.Error("redis: write refused", "redis", s.where, "err", err.Error())
	}
	w.done = upto
	close(w.changed)
	w.changed = make(chan struct{})
	return len(w.queue) > 0 || len(w.counters) > 0
}

// pipeWrite adds the commands of one write. The TTL is what is left by
// moat's clock when the write is sent, so a write that waited out an
// outage does not outlive its expiry.
func (s *Store) pipeWrite(ctx context.Context, pipe goredis.Pipeliner, wr *write, now time.Time) {
	if wr.key == "" {
		if wr.val != nil {
			pipe.SAdd(ctx, s.k.traps(), wr.trap)
		} else {
			pipe.SRem(ctx, s.k.traps(), wr.trap)
		}
		return
	}
	ttl := time.Duration(0)
	if !wr.exp.IsZero() {
		ttl = wr.exp.Sub(now)
	}
	if wr.val == nil || !wr.exp.IsZero() && ttl < time.Millisecond {
		pipe.Del(ctx, wr.key)
		if wr.index != "" {
			pipe.ZRem(ctx, wr.index, wr.member)
		}
		if wr.netOp {
			pipe.ZRem(ctx, s.k.nets(), wr.member)
		}
		return
	}
	pipe.Set(ctx, wr.key, wr.val, ttl)
	z := goredis.Z{Score: score(wr.exp), Member: wr.member}
	if wr.index != "" {
		pipe.ZAdd(ctx, wr.index, z)
	}
	if wr.netOp {
		pipe.ZAdd(ctx, s.k.nets(), z)
	}
	if wr.kind != "" {
		pipe.SAdd(ctx, s.k.kinds(), wr.kind)
	}
}

// close stops the writer after it has sent what it could.
func (w *writer) close(s *Store) error {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	close(w.quit)
	<-w.finished
	w.mu.Lock()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
	return w.finalErr
}

// shortOf reports, once a pipeline ending in WAIT has run without error,
// whether fewer replicas than s.wait confirmed it, logging the first
// shortfall and the first full confirmation after one.
func (s *Store) shortOf(wait *goredis.Cmd, err error) error {
	if wait == nil || err != nil {
		return nil
	}
	if got, _ := wait.Int64(); got < int64(s.wait) {
		why := fmt.Errorf("written to the master, but %d of %d replicas confirmed it within %v", got, s.wait, s.waitTimeout())
		if s.short.CompareAndSwap(false, true) {
			s.log.Error("redis: "+why.Error()+": sending it again until they do; durable writes (operator commands, trap hits) fail meanwhile; wait_replicas=0 in the store URL accepts Redis's asynchronous replication instead",
				"redis", s.where)
		}
		return why
	}
	if s.short.CompareAndSwap(true, false) {
		s.log.Info("redis: replicas confirm writes again", "redis", s.where, "replicas", s.wait)
	}
	return nil
}

// waitTimeout is how long a WAIT gives the replicas: half the request
// timeout, so that the request still ends within it.
func (s *Store) waitTimeout() time.Duration { return max(s.opt.Timeout/2, time.Millisecond) }
