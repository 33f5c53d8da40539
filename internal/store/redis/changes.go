package redis

import (
	"fmt"
	"net/netip"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// subscribe listens for other moats' host changes. go-redis subscribes
// again by itself after a disconnection; what was published meanwhile is
// covered by the new epoch of the outage, or by the cache TTL.
func (s *Store) subscribe() {
	defer s.bg.Done()
	ps := s.rdb.Subscribe(s.ctx, s.k.events())
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-s.ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			s.applyEvent(m.Payload)
		}
	}
}

// An event is the writer's node id and then one line per changed host:
// "+prefix" for a put, "-prefix" for a deletion.
func (s *Store) applyEvent(payload string) {
	node, rest, _ := strings.Cut(payload, "\n")
	if node == s.node {
		return
	}
	for _, line := range strings.Split(rest, "\n") {
		if len(line) < 2 {
			continue
		}
		p, err := netip.ParsePrefix(line[1:])
		if err != nil {
			continue
		}
		s.hosts.invalidate(p)
		if isNet(p) {
			s.setNet(p, line[0] == '+')
		}
		s.tell(p)
	}
}

// WatchHosts implements store.Watcher: fn hears of the changes other
// moats announce on the change channel, and of the zero Prefix when an
// outage may have lost some.
func (s *Store) WatchHosts(fn func(netip.Prefix)) { s.watch.Store(&fn) }

func (s *Store) tell(p netip.Prefix) {
	if fn := s.watch.Load(); fn != nil && *fn != nil {
		(*fn)(p)
	}
}

func isNet(p netip.Prefix) bool { return p.Bits() < p.Addr().BitLen() }

func fam(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// loadNets rereads the network entries, so Lookup knows which lengths to
// probe.
func (s *Store) loadNets() error {
	ctx, cancel := s.opCtx()
	defer cancel()
	min := fmt.Sprintf("(%d", s.clock.Now().UnixMilli())
	ms, err := s.rdb.ZRangeByScore(ctx, s.k.nets(), &goredis.ZRangeBy{Min: min, Max: "+inf"}).Result()
	if err != nil {
		return err
	}
	nets := make(map[netip.Prefix]struct{}, len(ms))
	for _, m := range ms {
		if p, err := netip.ParsePrefix(m); err == nil {
			nets[p] = struct{}{}
		}
	}
	s.nmu.Lock()
	// Networks written here but still queued or on their way are not
	// in Redis yet, or not in what it answered.
	s.w.mu.Lock()
	for _, q := range []map[string]*write{s.w.inflight, s.w.queue} {
		for _, w := range q {
			if w.netOp {
				if w.val != nil {
					nets[w.prefix] = struct{}{}
				} else {
					delete(nets, w.prefix)
				}
			}
		}
	}
	s.w.mu.Unlock()
	s.nets = nets
	s.rebuildLens()
	s.nmu.Unlock()
	return nil
}

// setNet adds or removes a network from the list Lookup probes.
func (s *Store) setNet(p netip.Prefix, present bool) {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	_, there := s.nets[p]
	if there == present {
		return
	}
	if present {
		s.nets[p] = struct{}{}
	} else {
		delete(s.nets, p)
	}
	s.rebuildLens()
}

// rebuildLens is called with nmu held.
func (s *Store) rebuildLens() {
	var seen [2][129]bool
	for p := range s.nets {
		seen[fam(p.Addr())][p.Bits()] = true
	}
	var lens [2][]int
	for f := range seen {
		for bits := 128; bits >= 0; bits-- {
			if seen[f][bits] {
				lens[f] = append(lens[f], bits)
			}
		}
	}
	s.netLens.Store(&lens)
}
