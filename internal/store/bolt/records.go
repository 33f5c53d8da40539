package bolt

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"moat/internal/store"
)

// Traps returns the run-time trap addresses, sorted.
func (s *Store) Traps() ([]string, error) {
	s.mu.RLock()
	ts := make([]string, 0, len(s.traps))
	for t := range s.traps {
		ts = append(ts, t)
	}
	s.mu.RUnlock()
	slices.Sort(ts)
	return ts, nil
}

// AddTrap stores a trap address.
func (s *Store) AddTrap(addr string) error {
	if addr == "" {
		return errors.New("store: add trap: empty address")
	}
	if len(addr) > bbolt.MaxKeySize {
		return fmt.Errorf("store: add trap: address of %d bytes is too long", len(addr))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	s.traps[addr] = struct{}{}
	s.trapDirty[addr] = struct{}{}
	return nil
}

// DelTrap removes a trap address; ErrNotFound if there was none.
func (s *Store) DelTrap(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	if _, ok := s.traps[addr]; !ok {
		return store.ErrNotFound
	}
	delete(s.traps, addr)
	s.trapDirty[addr] = struct{}{}
	return nil
}

// Add adds delta to the named counter.
func (s *Store) Add(counter string, delta int64) error {
	if counter == "" || len(counter) > bbolt.MaxKeySize {
		return fmt.Errorf("store: add: bad counter name %q", counter)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	s.counters[counter] += delta
	s.counterDirty[counter] = struct{}{}
	return nil
}

// Counters returns a copy of all counters.
func (s *Store) Counters() (map[string]int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := make(map[string]int64, len(s.counters))
	for k, v := range s.counters {
		m[k] = v
	}
	return m, nil
}

func checkRecord(op, kind, key string) error {
	switch {
	case kind == "" || len(kind) > bbolt.MaxKeySize:
		return fmt.Errorf("store: %s: bad record kind %q", op, kind)
	case key == "" || len(key) > bbolt.MaxKeySize:
		return fmt.Errorf("store: %s %s: bad record key %q", op, kind, key)
	}
	return nil
}

// Get returns a copy of the record kind/key.
func (s *Store) Get(kind, key string) ([]byte, bool, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.records[kind][key]
	if !ok || !live(r.expires, now) {
		return nil, false, nil
	}
	return append([]byte{}, r.val...), true, nil
}

// Put stores a copy of val as the record kind/key.
func (s *Store) Put(kind, key string, val []byte, expires time.Time) error {
	if err := checkRecord("put", kind, key); err != nil {
		return err
	}
	r := record{val: append([]byte{}, val...), expires: toNanos(expires)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	m := s.records[kind]
	if m == nil {
		m = make(map[string]record)
		s.records[kind] = m
	}
	m[key] = r
	s.recDirty[recKey{kind, key}] = struct{}{}
	return nil
}

// Delete removes the record kind/key; ErrNotFound if there was none.
func (s *Store) Delete(kind, key string) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	m := s.records[kind]
	r, ok := m[key]
	if !ok {
		return store.ErrNotFound
	}
	delete(m, key)
	if len(m) == 0 {
		delete(s.records, kind)
	}
	s.recDirty[recKey{kind, key}] = struct{}{}
	if !live(r.expires, now) {
		return store.ErrNotFound
	}
	return nil
}

// Scan calls fn for every unexpired record of kind, in key order. fn runs
// on a snapshot, without locks held, so it may call the store.
func (s *Store) Scan(kind string, fn func(key string, val []byte) bool) error {
	now := s.now()
	type kv struct {
		k string
		v []byte
	}
	s.mu.RLock()
	m := s.records[kind]
	rs := make([]kv, 0, len(m))
	for k, r := range m {
		if live(r.expires, now) {
			rs = append(rs, kv{k, append([]byte{}, r.val...)})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(rs, func(a, b kv) int { return cmp.Compare(a.k, b.k) })
	for _, r := range rs {
		if !fn(r.k, r.v) {
			break
		}
	}
	return nil
}
