// Package traps owns the spamtrap addresses: addresses no person uses, so
// any host that writes to one is a spam source.
//
// A Set merges the traps from the configuration with those added at run
// time (kept in the store, so they survive restarts and are shared by every
// moat on the same store). Lookups are served from memory; the set reloads
// the stored traps periodically so that traps added on another MX host
// apply here too.
//
// The package never decides a class by itself: it says whether an address
// is a trap, and classify turns a hit into a black host.
package traps

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"moat/internal/smtp"
	"moat/internal/store"
)

// Source says where a trap comes from.
type Source string

const (
	FromConfig Source = "config"
	FromStore  Source = "added"
)

// Trap is one trap address.
type Trap struct {
	Addr   string `json:"addr"`
	Source Source `json:"source"`
	Hits   int64  `json:"hits"`
}

// Set is the current trap list.
type Set struct {
	st     store.Store
	static map[string]bool // the configuration's traps; replaced under mu by SetConfigured
	mu     sync.Mutex      // serialises reloads and changes
	cur    atomic.Pointer[map[string]Source]
	bait   atomic.Pointer[Bait] // minted bait addresses are traps too; nil: no bait key
}

// New builds the set from the configured addresses and the store. A
// store that cannot be reached is no error (it wraps store.ErrUnavailable):
// the configured traps serve at once, and the stored ones from the first
// Reload that reaches the store (Watch retries).
func New(st store.Store, configured []string) (*Set, error) {
	s := &Set{st: st}
	static, err := normalizeAll(configured)
	if err != nil {
		return nil, err
	}
	s.static = static
	if err := s.Reload(); err != nil {
		if !errors.Is(err, store.ErrUnavailable) {
			return nil, err
		}
		s.publish(nil)
	}
	return s, nil
}

func normalizeAll(addrs []string) (map[string]bool, error) {
	m := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		n, err := smtp.Normalize(a)
		if err != nil {
			return nil, fmt.Errorf("traps: %q: %v", a, err)
		}
		m[n] = true
	}
	return m, nil
}

// SetConfigured replaces the configuration's traps (a reload). The stored
// traps stay as they are; when the store cannot be read now, the new
// configured list serves with the stored traps last read.
func (s *Set) SetConfigured(configured []string) error {
	static, err := normalizeAll(configured)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.static = static
	if err := s.reload(); err != nil {
		s.publish(s.stored())
		return err
	}
	return nil
}

// Reload reads the stored traps again.
func (s *Set) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reload()
}

func (s *Set) reload() error {
	stored, err := s.st.Traps()
	if err != nil {
		return err
	}
	s.publish(stored)
	return nil
}

// publish makes the set the configured traps and stored. Call it with mu
// held, or before the set is shared.
func (s *Set) publish(stored []string) {
	m := make(map[string]Source, len(s.static)+len(stored))
	for _, a := range stored {
		m[a] = FromStore
	}
	for a := range s.static {
		m[a] = FromConfig
	}
	s.cur.Store(&m)
}

// stored returns the stored traps as last read.
func (s *Set) stored() []string {
	var out []string
	if m := s.cur.Load(); m != nil {
		for a, src := range *m {
			if src == FromStore {
				out = append(out, a)
			}
		}
	}
	return out
}

// Is says whether addr (already normalised) is a trap.
func (s *Set) Is(addr string) bool {
	m := s.cur.Load()
	if m == nil {
		return false
	}
	if _, ok := (*m)[addr]; ok {
		return true
	}
	b := s.bait.Load()
	return b != nil && b.IsBait(addr)
}

// SetBait makes every address minted with b a trap.
func (s *Set) SetBait(b *Bait) { s.bait.Store(b) }

// Bait returns the bait set with SetBait, or nil.
func (s *Set) Bait() *Bait { return s.bait.Load() }

// Harvested returns who harvested addr (normalised) when it is a minted
// bait address.
func (s *Set) Harvested(addr string) (Harvest, bool) {
	b := s.bait.Load()
	if b == nil || !strings.HasPrefix(addr, BaitPrefix) {
		return Harvest{}, false
	}
	h, err := b.Decode(addr)
	return h, err == nil
}

// Add adds a trap address at run time and makes it durable.
func (s *Set) Add(addr string) (string, error) {
	n, err := smtp.Normalize(addr)
	if err != nil || !strings.Contains(n, "@") {
		return "", fmt.Errorf("traps: %q is not an address (want local@domain)", addr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.st.AddTrap(n); err != nil {
		return "", err
	}
	return n, s.reload()
}

// Del removes a trap added at run time. Traps from the configuration can
// only be removed by editing the configuration.
func (s *Set) Del(addr string) (string, error) {
	n, err := smtp.Normalize(addr)
	if err != nil {
		return "", fmt.Errorf("traps: %q is not an address (want local@domain)", addr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.static[n] {
		return "", fmt.Errorf("traps: %s comes from traps.addresses in the configuration: remove it there", n)
	}
	if err := s.st.DelTrap(n); err != nil {
		return "", err
	}
	return n, s.reload()
}

// HitCounter is the store counter that counts hits on one trap (addr
// normalised). Every minted bait address of a domain shares one counter,
// "trap_hits:b-*@domain": there is a new address per page view, and a
// counter each would grow without end.
func HitCounter(addr string) string {
	local, domain, _ := strings.Cut(addr, "@")
	if _, ok := baitShape(local); ok {
		return "trap_hits:" + BaitPrefix + "*@" + domain
	}
	return "trap_hits:" + addr
}

// List returns all traps, sorted, with their hit counts.
func (s *Set) List() ([]Trap, error) {
	m := s.cur.Load()
	if m == nil {
		return nil, nil
	}
	counters, err := s.st.Counters()
	if err != nil {
		return nil, err
	}
	out := make([]Trap, 0, len(*m))
	for a, src := range *m {
		out = append(out, Trap{Addr: a, Source: src, Hits: counters[HitCounter(a)]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, nil
}
