package redis

import (
	"errors"
	"fmt"
	"strings"

	"moat/internal/store"
)

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
