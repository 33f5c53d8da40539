package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"moat/internal/prefix"
	"moat/internal/store"
)

// getMany reads keys in one round trip; a missing key gives nil. It does
// not try while Redis is known to be down.
func (s *Store) getMany(keys []string) ([][]byte, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	if s.down.Load() {
		return nil, s.errUnavailable(nil)
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	out := make([][]byte, len(keys))
	if len(keys) == 1 {
		v, err := s.rdb.Get(ctx, keys[0]).Bytes()
		switch {
		case errors.Is(err, goredis.Nil):
			return out, nil
		case err != nil:
			return nil, s.fail(err)
		}
		out[0] = v
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*goredis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, s.fail(err)
	}
	for i, c := range cmds {
		v, err := c.Bytes()
		switch {
		case errors.Is(err, goredis.Nil):
		case err != nil:
			return nil, s.fail(err)
		default:
			out[i] = v
		}
	}
	return out, nil
}

// flushForRead makes the store's own writes visible to the reads that go
// to Redis only (listings, counters, traps).
func (s *Store) flushForRead() error {
	ctx, cancel := context.WithTimeout(s.ctx, 5*s.opt.Timeout)
	defer cancel()
	return s.Flush(ctx)
}

// Lookup returns the host entry of addr, else the most specific live
// network entry that contains it.
func (s *Store) Lookup(addr netip.Addr) (store.Host, bool, error) {
	if !addr.IsValid() {
		return store.Host{}, false, nil
	}
	addr = addr.Unmap().WithZone("")
	var buf [16]netip.Prefix
	cands := append(buf[:0], prefix.Host(addr))
	for _, bits := range s.netLens.Load()[fam(addr)] {
		p, _ := addr.Prefix(bits)
		cands = append(cands, p)
	}
	return s.lookup(cands)
}

// Host returns the entry stored under exactly p.
func (s *Store) Host(p netip.Prefix) (store.Host, bool, error) {
	p = prefix.Norm(p)
	if !p.IsValid() {
		return store.Host{}, false, nil
	}
	return s.lookup([]netip.Prefix{p})
}

type hostAnswer struct {
	h            store.Host
	found, known bool
}

// lookup answers with the first of cands, most specific first, that has a
// live entry. Each is answered by a fresh cache entry, else by a write of
// this moat that Redis has not acknowledged yet, else by Redis, all
// missing ones in one round trip. When Redis cannot be reached, cached
// entries up to StaleTTL old answer; if one of the candidates that
// matter has none, the answer is ErrUnavailable, never "not found".
func (s *Store) lookup(cands []netip.Prefix) (store.Host, bool, error) {
	now := s.clock.Now()
	mnow := mono()
	ep := s.epoch.Load()
	ttl := s.opt.CacheTTL

	// The fast path: fresh cache entries, in order.
	i := 0
	for ; i < len(cands); i++ {
		e, ok := s.hosts.get(cands[i])
		if !ok || !e.fresh(mnow, ttl, ep) {
			break
		}
		if e.ok && live(e.v.Expires, now) {
			return e.v, true, nil
		}
	}
	if i == len(cands) {
		return store.Host{}, false, nil
	}

	rest := cands[i:]
	mark := s.hosts.mark()
	ans := make([]hostAnswer, len(rest))
	var fetch []int
	var keys []string
	for j, p := range rest {
		if e, ok := s.hosts.get(p); ok && e.fresh(mnow, ttl, ep) {
			ans[j] = hostAnswer{e.v, e.ok, true}
			continue
		}
		k := s.k.host(p)
		if wr, ok := s.pending(k); ok {
			ans[j].known = true
			if wr.val != nil {
				h, err := decodeHost(p, wr.val)
				ans[j].h, ans[j].found = h, err == nil
			}
			continue
		}
		fetch = append(fetch, j)
		keys = append(keys, k)
	}
	var outage error
	if len(fetch) > 0 {
		vals, err := s.getMany(keys)
		switch {
		case errors.Is(err, store.ErrUnavailable):
			outage = err
			for _, j := range fetch {
				if e, ok := s.hosts.get(rest[j]); ok && e.usable(mnow, s.opt.StaleTTL) {
					ans[j] = hostAnswer{e.v, e.ok, true}
				}
			}
		case err != nil:
			return store.Host{}, false, err
		default:
			for n, j := range fetch {
				p := rest[j]
				ans[j].known = true
				if vals[n] == nil {
					s.hosts.install(p, store.Host{}, false, ep, mark)
					continue
				}
				h, err := decodeHost(p, vals[n])
				if err != nil {
					return store.Host{}, false, fmt.Errorf("store: redis: host %s: %w", p, err)
				}
				ans[j].h, ans[j].found = h, true
				s.hosts.install(p, h, true, ep, mark)
			}
		}
	}
	for _, a := range ans {
		if !a.known {
			return store.Host{}, false, outage
		}
		if a.found && live(a.h.Expires, now) {
			return a.h, true, nil
		}
	}
	return store.Host{}, false, nil
}

// PutHost stores h under its prefix with the host bits cleared.
func (s *Store) PutHost(h store.Host) error {
	p := prefix.Norm(h.Prefix)
	if !p.IsValid() {
		return fmt.Errorf("store: put host: invalid prefix %q", h.Prefix)
	}
	h.Prefix = p
	k := s.k.host(p)
	err := s.enqueue(k, &write{key: k, val: encodeHost(h), exp: h.Expires, index: s.k.hosts(),
		member: p.String(), prefix: p, hostOp: true, netOp: isNet(p)})
	if err != nil {
		return err
	}
	s.hosts.write(p, h, true, s.epoch.Load())
	if isNet(p) {
		s.setNet(p, true)
	}
	return nil
}

// DeleteHost forgets p; ErrNotFound if there was no live entry. Whether
// there was one is asked of Redis, not of the cache: another moat may
// have changed it a moment ago.
func (s *Store) DeleteHost(p netip.Prefix) error {
	p = prefix.Norm(p)
	if !p.IsValid() {
		return store.ErrNotFound
	}
	k := s.k.host(p)
	val, err := s.current(k)
	if err != nil {
		return err
	}
	found := false
	if val != nil {
		h, err := decodeHost(p, val)
		found = err == nil && live(h.Expires, s.clock.Now())
		err = s.enqueue(k, &write{key: k, index: s.k.hosts(), member: p.String(), prefix: p, hostOp: true, netOp: isNet(p)})
		if err != nil {
			return err
		}
	}
	s.hosts.write(p, store.Host{}, false, s.epoch.Load())
	if isNet(p) {
		s.setNet(p, false)
	}
	if !found {
		return store.ErrNotFound
	}
	return nil
}

// current returns the value of key as this moat will leave it: its own
// pending write, else what Redis holds.
func (s *Store) current(k string) ([]byte, error) {
	if wr, ok := s.pending(k); ok {
		return wr.val, nil
	}
	vals, err := s.getMany([]string{k})
	if err != nil {
		return nil, err
	}
	return vals[0], nil
}

// Hosts calls fn for every live entry, in address order, on a snapshot:
// fn may call the store.
func (s *Store) Hosts(fn func(store.Host) bool) error {
	if err := s.flushForRead(); err != nil {
		return err
	}
	members, err := s.indexMembers(s.k.hosts())
	if err != nil {
		return err
	}
	now := s.clock.Now()
	var hs []store.Host
	err = s.values(members, func(m string) (string, bool) {
		p, err := netip.ParsePrefix(m)
		if err != nil {
			return "", false
		}
		return s.k.host(p), true
	}, func(m string, v []byte) error {
		p, _ := netip.ParsePrefix(m)
		h, err := decodeHost(p, v)
		if err != nil {
			return fmt.Errorf("store: redis: host %s: %w", p, err)
		}
		if live(h.Expires, now) {
			hs = append(hs, h)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(hs, func(a, b store.Host) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	for _, h := range hs {
		if !fn(h) {
			break
		}
	}
	return nil
}

// indexMembers returns the members of a sorted-set index that have not
// expired by moat's clock, each once.
func (s *Store) indexMembers(index string) ([]string, error) {
	if s.down.Load() {
		return nil, s.errUnavailable(nil)
	}
	nowms := float64(s.clock.Now().UnixMilli())
	seen := make(map[string]struct{})
	var out []string
	var cursor uint64
	for {
		ctx, cancel := s.opCtx()
		kv, next, err := s.rdb.ZScan(ctx, index, cursor, "", 1000).Result()
		cancel()
		if err != nil {
			return nil, s.fail(err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			sc, err := strconv.ParseFloat(kv[i+1], 64)
			if err != nil || sc <= nowms {
				continue
			}
			if _, dup := seen[kv[i]]; !dup {
				seen[kv[i]] = struct{}{}
				out = append(out, kv[i])
			}
		}
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

// values reads the values of many members in round trips of a few
// hundred keys; a member whose key has gone is skipped.
func (s *Store) values(members []string, key func(string) (string, bool), fn func(m string, v []byte) error) error {
	const chunk = 500
	for len(members) > 0 {
		n := min(chunk, len(members))
		var ms, ks []string
		for _, m := range members[:n] {
			if k, ok := key(m); ok {
				ms, ks = append(ms, m), append(ks, k)
			}
		}
		members = members[n:]
		if len(ks) == 0 {
			continue
		}
		vals, err := s.getMany(ks)
		if err != nil {
			return err
		}
		for i, v := range vals {
			if v == nil {
				continue
			}
			if err := fn(ms[i], v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Triplet returns what the greylist remembers of t.
func (s *Store) Triplet(t store.Triplet) (store.Attempt, bool, error) {
	id := t.ID()
	now := s.clock.Now()
	mnow := mono()
	ep := s.epoch.Load()
	answer := func(a store.Attempt, ok bool) (store.Attempt, bool, error) {
		if !ok || !live(a.Expires, now) {
			return store.Attempt{}, false, nil
		}
		return a, true, nil
	}
	e, cached := s.trips.get(id)
	if cached && e.fresh(mnow, s.opt.CacheTTL, ep) {
		return answer(e.v, e.ok)
	}
	k := s.k.triplet(id)
	if wr, ok := s.pending(k); ok {
		if wr.val == nil {
			return store.Attempt{}, false, nil
		}
		a, err := decodeAttempt(wr.val)
		return answer(a, err == nil)
	}
	mark := s.trips.mark()
	vals, err := s.getMany([]string{k})
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) && cached && e.usable(mnow, s.opt.StaleTTL) {
			return answer(e.v, e.ok)
		}
		return store.Attempt{}, false, err
	}
	if vals[0] == nil {
		s.trips.install(id, store.Attempt{}, false, ep, mark)
		return store.Attempt{}, false, nil
	}
	a, err := decodeAttempt(vals[0])
	if err != nil {
		return store.Attempt{}, false, fmt.Errorf("store: redis: triplet %s: %w", id, err)
	}
	s.trips.install(id, a, true, ep, mark)
	return answer(a, true)
}

// PutTriplet stores a for t.
func (s *Store) PutTriplet(t store.Triplet, a store.Attempt) error {
	return s.PutTripletID(t.ID(), a)
}

// PutTripletID stores a under id.
func (s *Store) PutTripletID(id store.TripletID, a store.Attempt) error {
	k := s.k.triplet(id)
	if err := s.enqueue(k, &write{key: k, val: encodeAttempt(a), exp: a.Expires}); err != nil {
		return err
	}
	s.trips.write(id, a, true, s.epoch.Load())
	return nil
}

// Triplets calls fn for every live triplet. It walks the key space with
// SCAN (on every master of a cluster): it is for export, not for the hot
// path.
func (s *Store) Triplets(fn func(store.TripletID, store.Attempt) bool) error {
	if err := s.flushForRead(); err != nil {
		return err
	}
	keys, err := s.scanKeys(s.k.tripletMatch())
	if err != nil {
		return err
	}
	now := s.clock.Now()
	pre := s.k.triplet(store.TripletID{})
	pre = pre[:len(pre)-2*len(store.TripletID{})]
	stop := errors.New("stop")
	err = s.values(keys, func(k string) (string, bool) { return k, true }, func(k string, v []byte) error {
		id, err := store.ParseTripletID(strings.TrimPrefix(k, pre))
		if err != nil {
			return nil // not ours
		}
		a, err := decodeAttempt(v)
		if err != nil {
			return fmt.Errorf("store: redis: triplet %s: %w", id, err)
		}
		if live(a.Expires, now) && !fn(id, a) {
			return stop
		}
		return nil
	})
	if err == stop {
		return nil
	}
	return err
}

// scanKeys returns the keys matching a SCAN pattern, each once.
func (s *Store) scanKeys(match string) ([]string, error) {
	if s.down.Load() {
		return nil, s.errUnavailable(nil)
	}
	var mu sync.Mutex
	seen := make(map[string]struct{})
	var out []string
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		var cursor uint64
		for {
			cctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
			ks, next, err := c.Scan(cctx, cursor, match, 1000).Result()
			cancel()
			if err != nil {
				return err
			}
			mu.Lock()
			for _, k := range ks {
				if _, dup := seen[k]; !dup {
					seen[k] = struct{}{}
					out = append(out, k)
				}
			}
			mu.Unlock()
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	var err error
	if cc, ok := s.rdb.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(s.ctx, func(ctx context.Context, c *goredis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(s.ctx, s.rdb)
	}
	if err != nil {
		return nil, s.fail(err)
	}
	return out, nil
}

// Traps returns the run-time trap addresses, sorted.
func (s *Store) Traps() ([]string, error) {
	if err := s.flushForRead(); err != nil {
		return nil, err
	}
	if s.down.Load() {
		return nil, s.errUnavailable(nil)
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	ts, err := s.rdb.SMembers(ctx, s.k.traps()).Result()
	if err != nil {
		return nil, s.fail(err)
	}
	slices.Sort(ts)
	return ts, nil
}

// AddTrap stores a trap address.
func (s *Store) AddTrap(addr string) error {
	if addr == "" {
		return errors.New("store: add trap: empty address")
	}
	return s.enqueue(trapKey(addr), &write{trap: addr, val: []byte{}})
}

// DelTrap removes a trap address; ErrNotFound if there was none.
func (s *Store) DelTrap(addr string) error {
	found := false
	if wr, ok := s.pending(trapKey(addr)); ok {
		found = wr.val != nil
	} else {
		if s.down.Load() {
			return s.errUnavailable(nil)
		}
		ctx, cancel := s.opCtx()
		ok, err := s.rdb.SIsMember(ctx, s.k.traps(), addr).Result()
		cancel()
		if err != nil {
			return s.fail(err)
		}
		found = ok
	}
	if !found {
		return store.ErrNotFound
	}
	return s.enqueue(trapKey(addr), &write{trap: addr})
}

// Add adds delta to the named counter. Deltas are summed in the queue and
// sent as one HINCRBY per counter and batch.
func (s *Store) Add(counter string, delta int64) error {
	if counter == "" {
		return fmt.Errorf("store: add: bad counter name %q", counter)
	}
	return s.enqueueAdd(counter, delta)
}

// Counters returns all counters.
func (s *Store) Counters() (map[string]int64, error) {
	if err := s.flushForRead(); err != nil {
		return nil, err
	}
	if s.down.Load() {
		return nil, s.errUnavailable(nil)
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	raw, err := s.rdb.HGetAll(ctx, s.k.counters()).Result()
	if err != nil {
		return nil, s.fail(err)
	}
	m := make(map[string]int64, len(raw))
	for k, v := range raw {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("store: redis: counter %s: %q is not an integer", k, v)
		}
		m[k] = n
	}
	return m, nil
}

func checkRecord(op, kind, key string) error {
	switch {
	case kind == "":
		return fmt.Errorf("store: %s: bad record kind %q", op, kind)
	case key == "":
		return fmt.Errorf("store: %s %s: bad record key %q", op, kind, key)
	}
	return nil
}

// Get returns a copy of the record kind/key.
func (s *Store) Get(kind, key string) ([]byte, bool, error) {
	if kind == "" || key == "" {
		return nil, false, nil
	}
	v, err := s.current(s.k.record(kind, key))
	if err != nil || v == nil {
		return nil, false, err
	}
	val, exp, err := decodeRecord(v)
	if err != nil {
		return nil, false, fmt.Errorf("store: redis: record %s/%s: %w", kind, key, err)
	}
	if !live(exp, s.clock.Now()) {
		return nil, false, nil
	}
	return val, true, nil
}

// Put stores a copy of val as the record kind/key.
func (s *Store) Put(kind, key string, val []byte, expires time.Time) error {
	if err := checkRecord("put", kind, key); err != nil {
		return err
	}
	k := s.k.record(kind, key)
	return s.enqueue(k, &write{key: k, val: encodeRecord(val, expires), exp: expires,
		index: s.k.kindIndex(kind), member: key, kind: kind})
}

// Delete removes the record kind/key; ErrNotFound if there was none.
func (s *Store) Delete(kind, key string) error {
	if kind == "" || key == "" {
		return store.ErrNotFound
	}
	k := s.k.record(kind, key)
	v, err := s.current(k)
	if err != nil {
		return err
	}
	if v == nil {
		return store.ErrNotFound
	}
	if err := s.enqueue(k, &write{key: k, index: s.k.kindIndex(kind), member: key}); err != nil {
		return err
	}
	if _, exp, err := decodeRecord(v); err != nil || !live(exp, s.clock.Now()) {
		return store.ErrNotFound
	}
	return nil
}

type record struct {
	key string
	val []byte
	exp time.Time
}

// records returns the live records of kind, by key.
func (s *Store) records(kind string) ([]record, error) {
	members, err := s.indexMembers(s.k.kindIndex(kind))
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	var rs []record
	err = s.values(members, func(m string) (string, bool) { return s.k.record(kind, m), true }, func(m string, v []byte) error {
		val, exp, err := decodeRecord(v)
		if err != nil {
			return fmt.Errorf("store: redis: record %s/%s: %w", kind, m, err)
		}
		if live(exp, now) {
			rs = append(rs, record{m, val, exp})
		}
		return nil
	})
	slices.SortFunc(rs, func(a, b record) int { return cmp.Compare(a.key, b.key) })
	return rs, err
}

// Scan calls fn for every live record of kind, in key order, on a
// snapshot: fn may call the store.
func (s *Store) Scan(kind string, fn func(key string, val []byte) bool) error {
	if err := s.flushForRead(); err != nil {
		return err
	}
	rs, err := s.records(kind)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if !fn(r.key, r.val) {
			break
		}
	}
	return nil
}

// Records calls fn for every live record of every kind.
func (s *Store) Records(fn func(kind, key string, val []byte, expires time.Time) bool) error {
	if err := s.flushForRead(); err != nil {
		return err
	}
	if s.down.Load() {
		return s.errUnavailable(nil)
	}
	ctx, cancel := s.opCtx()
	kinds, err := s.rdb.SMembers(ctx, s.k.kinds()).Result()
	cancel()
	if err != nil {
		return s.fail(err)
	}
	slices.Sort(kinds)
	for _, kind := range kinds {
		rs, err := s.records(kind)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if !fn(kind, r.key, r.val, r.exp) {
				return nil
			}
		}
	}
	return nil
}
