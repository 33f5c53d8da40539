package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// Flush asks the flusher for an immediate commit and waits for it. Every
// write made before the call is in that commit, because the flusher takes
// the dirty sets only after it has received the request.
func (s *Store) Flush(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	if s.db == nil {
		return nil // Memory: nothing is ever written
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
	for k, t := range s.tallies {
		if !liveTally(t, now) {
			delete(s.tallies, k)
			s.tallyDirty[k] = struct{}{}
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
	tallies  []kv

	hostDirty    map[netip.Prefix]struct{}
	tripDirty    [nShards]map[tkey]struct{}
	trapDirty    map[string]struct{}
	counterDirty map[string]struct{}
	recDirty     map[recKey]struct{}
	tallyDirty   map[string]struct{}
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
	b.tallyDirty, s.tallyDirty = s.tallyDirty, make(map[string]struct{})
	for k := range b.tallyDirty {
		e := kv{k: []byte(k)}
		if t, ok := s.tallies[k]; ok {
			e.v = appendTally(nil, t)
		}
		b.tallies = append(b.tallies, e)
	}
	s.mu.Unlock()
	b.n += len(b.traps) + len(b.counters) + len(b.recDirty) + len(b.tallies)
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
	for k := range b.tallyDirty {
		s.tallyDirty[k] = struct{}{}
	}
	s.mu.Unlock()
}

// commit writes everything dirty in one bbolt transaction: one fsync for
// the whole batch, whatever its size.
func (s *Store) commit() error {
	b := s.take()
	if b.n == 0 || s.db == nil {
		// Nothing to write, or no file to write it to (Memory).
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
		if err := apply(tx.Bucket(bucketTallies), b.tallies); err != nil {
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
