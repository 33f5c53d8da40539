package redis

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"moat/internal/prefix"
	"moat/internal/store"
)

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
