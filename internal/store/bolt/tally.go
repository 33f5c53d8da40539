package bolt

import (
	"encoding/binary"
	"time"

	"moat/internal/store"
)

// tally is what memory keeps of one tally: the latest note of each member
// (Unix nanoseconds) and when the whole tally lapses, its latest note plus
// the window. The members are few (limit, a few hundred at most), so the
// linear passes below cost less than keeping them ordered would.
type tally struct {
	notes   map[string]int64
	expires int64
}

// Tally notes member under key at at and counts the members noted within
// window (store.Store says the rest). One process owns the file, so the
// store's lock is all the atomicity it needs.
func (s *Store) Tally(key, member string, at time.Time, window time.Duration, limit int) (int, error) {
	if err := store.CheckTally(key, member, window, limit); err != nil {
		return 0, err
	}
	now := toNanos(at)
	cutoff := now - int64(window)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return 0, errClosed
	}
	t := s.tallies[key]
	if t == nil {
		t = &tally{notes: make(map[string]int64)}
		s.tallies[key] = t
	}
	if t.notes[member] < now {
		t.notes[member] = now
	}
	latest := int64(0)
	for m, n := range t.notes {
		if n < cutoff {
			delete(t.notes, m)
			continue
		}
		latest = max(latest, n)
	}
	for len(t.notes) > limit {
		oldest, at := "", int64(0)
		for m, n := range t.notes {
			if oldest == "" || n < at {
				oldest, at = m, n
			}
		}
		delete(t.notes, oldest)
	}
	t.expires = latest + int64(window)
	s.tallyDirty[key] = struct{}{}
	return len(t.notes), nil
}

// DropTally forgets key's notes.
func (s *Store) DropTally(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	if _, ok := s.tallies[key]; ok {
		delete(s.tallies, key)
		s.tallyDirty[key] = struct{}{}
	}
	return nil
}

// appendTally encodes a tally: expires, then each member's note, its
// length and its bytes.
func appendTally(b []byte, t *tally) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.expires))
	for m, n := range t.notes {
		b = binary.BigEndian.AppendUint64(b, uint64(n))
		b = append(b, byte(len(m)))
		b = append(b, m...)
	}
	return b
}

func decodeTally(b []byte) (*tally, error) {
	if len(b) < 8 {
		return nil, errFormat
	}
	t := &tally{notes: make(map[string]int64), expires: int64(binary.BigEndian.Uint64(b))}
	for b = b[8:]; len(b) > 0; {
		if len(b) < 9 || len(b) < 9+int(b[8]) || b[8] == 0 {
			return nil, errFormat
		}
		n, l := int64(binary.BigEndian.Uint64(b)), int(b[8])
		t.notes[string(b[9:9+l])] = n
		b = b[9+l:]
	}
	return t, nil
}

// liveTally reports whether t still counts at now: a tally lapses a window
// after its latest note.
func liveTally(t *tally, now int64) bool { return t.expires > now }
