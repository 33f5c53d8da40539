package redis

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"moat/internal/prefix"
	"moat/internal/store"
)

// maxUpdateTries bounds how often UpdateHost starts again when another
// moat wrote the same host between its read and its write.
const maxUpdateTries = 16

// updateLocks serialise this process's updates of one host, so that the
// transaction only ever races another moat's, not its own sessions'.
type updateLocks struct {
	seed maphash.Seed
	mu   [64]sync.Mutex
}

var hostLocks = updateLocks{seed: maphash.MakeSeed()}

func (l *updateLocks) of(p netip.Prefix) *sync.Mutex {
	return &l.mu[maphash.Comparable(l.seed, p)%uint64(len(l.mu))]
}

// UpdateHost is a compare-and-set on the host's key with WATCH/MULTI:
// if any moat writes the key between the read and the write, the
// transaction fails and fn runs again on the new value. Only the host's
// own key is in the transaction (in cluster mode a transaction must stay
// in one hash slot); the listing indexes and the change message follow
// it, as for every other write. Class changes are rare, so the round
// trips this costs are not on any hot path.
func (s *Store) UpdateHost(p netip.Prefix, fn func(store.Host, bool) (store.Host, bool)) (store.Host, bool, error) {
	p = prefix.Norm(p)
	if !p.IsValid() {
		return store.Host{}, false, fmt.Errorf("store: update host: invalid prefix %q", p)
	}
	if s.closed.Load() {
		return store.Host{}, false, errClosed
	}
	if s.down.Load() {
		return store.Host{}, false, s.errUnavailable(nil)
	}
	// This moat's own queued writes of p go first, or the transaction
	// would read a value older than what this moat already answers with.
	if wr, ok := s.pending(s.k.host(p)); ok && wr != nil {
		if err := s.flushForRead(); err != nil {
			return store.Host{}, false, err
		}
	}
	mu := hostLocks.of(p)
	mu.Lock()
	defer mu.Unlock()
	k := s.k.host(p)
	ctx, cancel := s.opCtx()
	defer cancel()
	for try := range maxUpdateTries {
		if try > 0 {
			// Another moat won the race; give it a moment.
			time.Sleep(time.Duration(try) * time.Millisecond)
		}
		var (
			res       store.Host
			wrote     bool
			confirmed bool
		)
		err := s.rdb.Watch(ctx, func(tx *goredis.Tx) error {
			now := s.clock.Now()
			var old store.Host
			ok := false
			val, err := tx.Get(ctx, k).Bytes()
			switch {
			case errors.Is(err, goredis.Nil):
			case err != nil:
				return err
			default:
				if h, derr := decodeHost(p, val); derr == nil && live(h.Expires, now) {
					old, ok = h, true
				}
			}
			h, put := fn(old, ok)
			if !put {
				res = old
				return nil
			}
			h.Prefix = p
			wr := &write{key: k, val: encodeHost(h), exp: h.Expires}
			if _, err := tx.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
				s.pipeWrite(ctx, pipe, wr, now)
				return nil
			}); err != nil {
				return err
			}
			res, wrote = h, true
			// WAIT on the transaction's own connection: it covers the
			// write just made.
			confirmed = s.wait == 0 || s.shortOf(tx.Do(ctx, "wait", s.wait, s.waitTimeout().Milliseconds()), nil) == nil
			return nil
		}, k)
		if errors.Is(err, goredis.TxFailedErr) {
			continue
		}
		if err != nil {
			return store.Host{}, false, s.fail(err)
		}
		if !wrote {
			return res, false, nil
		}
		s.hosts.write(p, res, true, s.epoch.Load())
		if isNet(p) {
			s.setNet(p, true)
		}
		if !confirmed {
			// Too few replicas have it: the writer sends it again
			// until they do, and the caller's Flush waits for that.
			// The queued write also carries the indexes and the
			// change message.
			s.enqueue(k, &write{key: k, val: encodeHost(res), exp: res.Expires, index: s.k.hosts(),
				member: p.String(), prefix: p, hostOp: true, netOp: isNet(p)})
			return res, true, nil
		}
		// The listing indexes and the change message. A listing that
		// misses them for a moment, or a moat that hears late, costs
		// nothing: Lookup asks for the key itself.
		z := goredis.Z{Score: score(res.Expires), Member: p.String()}
		pipe := s.rdb.Pipeline()
		pipe.ZAdd(ctx, s.k.hosts(), z)
		if isNet(p) {
			pipe.ZAdd(ctx, s.k.nets(), z)
		}
		pipe.Publish(ctx, s.k.events(), s.node+"\n+"+p.String())
		if _, err := pipe.Exec(ctx); err != nil {
			return res, true, s.fail(err)
		}
		return res, true, nil
	}
	return store.Host{}, false, fmt.Errorf("store: redis %s: host %s changed %d times while being updated", s.where, p, maxUpdateTries)
}
