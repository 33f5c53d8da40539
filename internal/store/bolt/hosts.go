package bolt

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"moat/internal/prefix"
	"moat/internal/store"
)

func fam(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// addNet and delNet keep the per-family list of network lengths in use, so
// Lookup probes only lengths that have entries. Called with hmu held, once
// per prefix added to or removed from hosts.
func (s *Store) addNet(p netip.Prefix) {
	if p.Bits() == p.Addr().BitLen() {
		return
	}
	f := fam(p.Addr())
	s.netCount[f][p.Bits()]++
	if s.netCount[f][p.Bits()] == 1 {
		s.rebuildNets(f)
	}
}

func (s *Store) delNet(p netip.Prefix) {
	if p.Bits() == p.Addr().BitLen() {
		return
	}
	f := fam(p.Addr())
	s.netCount[f][p.Bits()]--
	if s.netCount[f][p.Bits()] == 0 {
		s.rebuildNets(f)
	}
}

func (s *Store) rebuildNets(f int) {
	var lens []int
	for bits := len(s.netCount[f]) - 1; bits >= 0; bits-- {
		if s.netCount[f][bits] > 0 {
			lens = append(lens, bits)
		}
	}
	s.nets[f] = lens
}

// Lookup returns the host entry of addr, else the most specific unexpired
// network that contains it.
func (s *Store) Lookup(addr netip.Addr) (store.Host, bool, error) {
	if !addr.IsValid() {
		return store.Host{}, false, nil
	}
	addr = addr.Unmap().WithZone("")
	now := s.now()
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	p := prefix.Host(addr)
	if v, ok := s.hosts[p]; ok && live(v.expires, now) {
		return v.host(p), true, nil
	}
	for _, bits := range s.nets[fam(addr)] {
		p, _ := addr.Prefix(bits)
		if v, ok := s.hosts[p]; ok && live(v.expires, now) {
			return v.host(p), true, nil
		}
	}
	return store.Host{}, false, nil
}

// Host returns the entry stored under exactly p.
func (s *Store) Host(p netip.Prefix) (store.Host, bool, error) {
	p = prefix.Norm(p)
	now := s.now()
	s.hmu.RLock()
	v, ok := s.hosts[p]
	s.hmu.RUnlock()
	if !ok || !live(v.expires, now) {
		return store.Host{}, false, nil
	}
	return v.host(p), true, nil
}

// PutHost stores h under its prefix with the host bits cleared.
func (s *Store) PutHost(h store.Host) error {
	p := prefix.Norm(h.Prefix)
	if !p.IsValid() {
		return fmt.Errorf("store: put host: invalid prefix %q", h.Prefix)
	}
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	s.putHostLocked(p, h)
	return nil
}

// UpdateHost runs fn under the hosts lock: nothing else writes p between
// fn's read and its write.
func (s *Store) UpdateHost(p netip.Prefix, fn func(store.Host, bool) (store.Host, bool)) (store.Host, bool, error) {
	p = prefix.Norm(p)
	if !p.IsValid() {
		return store.Host{}, false, fmt.Errorf("store: update host: invalid prefix %q", p)
	}
	now := s.now()
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed.Load() {
		return store.Host{}, false, errClosed
	}
	var old store.Host
	v, ok := s.hosts[p]
	if ok = ok && live(v.expires, now); ok {
		old = v.host(p)
	}
	h, write := fn(old, ok)
	if !write {
		return old, false, nil
	}
	h.Prefix = p
	s.putHostLocked(p, h)
	return h, true, nil
}

// putHostLocked stores h under p; s.hmu is held.
func (s *Store) putHostLocked(p netip.Prefix, h store.Host) {
	if _, ok := s.hosts[p]; !ok {
		s.addNet(p)
	}
	s.hosts[p] = hval{
		class:   h.Class,
		source:  h.Source,
		reason:  h.Reason,
		first:   toNanos(h.First),
		last:    toNanos(h.Last),
		expires: toNanos(h.Expires),
	}
	s.hostDirty[p] = struct{}{}
}

// DeleteHost forgets p; ErrNotFound if there was no unexpired entry.
func (s *Store) DeleteHost(p netip.Prefix) error {
	p = prefix.Norm(p)
	now := s.now()
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	v, ok := s.hosts[p]
	if !ok {
		return store.ErrNotFound
	}
	delete(s.hosts, p)
	s.delNet(p)
	s.hostDirty[p] = struct{}{}
	if !live(v.expires, now) {
		return store.ErrNotFound
	}
	return nil
}

// Hosts calls fn for every unexpired entry, in address order. fn runs on a
// snapshot, without locks held, so it may call the store.
func (s *Store) Hosts(fn func(store.Host) bool) error {
	now := s.now()
	s.hmu.RLock()
	hs := make([]store.Host, 0, len(s.hosts))
	for p, v := range s.hosts {
		if live(v.expires, now) {
			hs = append(hs, v.host(p))
		}
	}
	s.hmu.RUnlock()
	slices.SortFunc(hs, func(a, b store.Host) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
	for _, h := range hs {
		if !fn(h) {
			break
		}
	}
	return nil
}
