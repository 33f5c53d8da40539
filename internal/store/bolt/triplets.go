package bolt

import (
	"moat/internal/store"
)

// shard is the part of the triplet index that holds k.
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
