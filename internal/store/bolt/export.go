package bolt

import (
	"cmp"
	"slices"
	"time"

	"moat/internal/store"
)

// Triplets calls fn for every unexpired triplet, shard by shard. Each
// shard is copied under its lock and fn runs with no lock held, so fn may
// call the store.
func (s *Store) Triplets(fn func(store.TripletID, store.Attempt) bool) error {
	now := s.now()
	type entry struct {
		k tkey
		v tval
	}
	var es []entry
	for i := range s.shards {
		sh := &s.shards[i]
		es = es[:0]
		sh.mu.RLock()
		for k, v := range sh.m {
			if live(v.expires, now) {
				es = append(es, entry{k, v})
			}
		}
		sh.mu.RUnlock()
		for _, e := range es {
			a := store.Attempt{First: fromNanos(e.v.first), Last: fromNanos(e.v.last), Count: e.v.count, Expires: fromNanos(e.v.expires)}
			if !fn(store.TripletID(e.k), a) {
				return nil
			}
		}
	}
	return nil
}

// Records calls fn for every unexpired record, by kind and key, on a
// snapshot taken with no lock held while fn runs.
func (s *Store) Records(fn func(kind, key string, val []byte, expires time.Time) bool) error {
	now := s.now()
	type rec struct {
		kind, key string
		r         record
	}
	s.mu.RLock()
	var rs []rec
	for kind, m := range s.records {
		for k, r := range m {
			if live(r.expires, now) {
				rs = append(rs, rec{kind, k, record{val: append([]byte{}, r.val...), expires: r.expires}})
			}
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(rs, func(a, b rec) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.key, b.key))
	})
	for _, r := range rs {
		if !fn(r.kind, r.key, r.r.val, fromNanos(r.r.expires)) {
			break
		}
	}
	return nil
}
