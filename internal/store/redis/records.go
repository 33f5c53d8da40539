package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"moat/internal/store"
)

// Traps returns the run-time trap addresses, sorted.
func (s *Store) Traps() ([]string, error) {
	if err := s.flushForRead(); err != nil {
		return nil, err
	}
	var ts []string
	err := s.call(func(ctx context.Context) (err error) {
		ts, err = s.rdb.SMembers(ctx, s.k.traps()).Result()
		return err
	})
	if err != nil {
		return nil, err
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
		err := s.call(func(ctx context.Context) (err error) {
			found, err = s.rdb.SIsMember(ctx, s.k.traps(), addr).Result()
			return err
		})
		if err != nil {
			return err
		}
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
	var raw map[string]string
	err := s.call(func(ctx context.Context) (err error) {
		raw, err = s.rdb.HGetAll(ctx, s.k.counters()).Result()
		return err
	})
	if err != nil {
		return nil, err
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
	var kinds []string
	err := s.call(func(ctx context.Context) (err error) {
		kinds, err = s.rdb.SMembers(ctx, s.k.kinds()).Result()
		return err
	})
	if err != nil {
		return err
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
