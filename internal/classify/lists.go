package classify

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"moat/internal/reputation"
	"moat/internal/store"
)

// networkVerdict is what imported lists and escalated autonomous systems
// say of addr; ok is false when they say nothing.
func (e *Engine) networkVerdict(addr netip.Addr, stored bool, h store.Host) (Verdict, bool) {
	r := e.rep()
	if r == nil {
		return Verdict{}, false
	}
	if _, reason, ok := r.Drop.Lookup(addr); ok {
		// Only an operator's own white entry stands against the list.
		if !operatorWhite(h, stored) {
			return Verdict{Class: store.Black, Source: store.SourceNetList, Reason: reason, Static: true}, true
		}
	}
	if r.ASN != nil && (!stored || h.Class == store.Grey) {
		if a, ok := r.ASN.Lookup(addr); ok {
			if b, ok, _ := e.st.Get(asnKind, a.String()); ok {
				return Verdict{Class: store.Black, Source: store.SourceNetList, Reason: string(b)}, true
			}
		}
	}
	return Verdict{}, false
}

// Lookup starts the DNS list lookups for a connecting host and returns a
// channel that carries, once, the verdict they lead to, within the DNSBL
// timeout. The verdict is stored as well, so a result that comes too late
// for this session serves the next one. It returns nil when there is
// nothing to look up: no lists, or a class already settled by a list, an
// operator or the store (white and black hosts need no lookup).
func (e *Engine) Lookup(addr netip.Addr, v Verdict) <-chan Verdict {
	r := e.rep()
	if r == nil || r.DNSBL == nil || v.Static || v.Class != store.Grey {
		return nil
	}
	ch := make(chan Verdict, 1)
	go func() {
		sc := r.DNSBL.Score(context.Background(), addr)
		nv, err := e.DNSBL(addr, sc)
		if e.hooks.DNSBL != nil {
			e.hooks.DNSBL(sc, nv)
		}
		if err != nil && r.Log != nil {
			r.Log.Warn("dnsbl: storing verdict", "client", addr.String(), "err", err.Error())
		}
		ch <- nv
	}()
	return ch
}

// DNSBL applies a DNS list score to addr: at or above the threshold the
// host is black, at or below the allow threshold it is white for the
// allow TTL (no greylisting), in between nothing changes. Stronger
// evidence already stored stands (precedence.go): an allow list never
// undoes what a host did here.
func (e *Engine) DNSBL(addr netip.Addr, sc reputation.Score) (Verdict, error) {
	r := e.rep()
	if r == nil {
		return Verdict{Class: store.Grey, Reason: "no DNS lists"}, nil
	}
	addr = addr.Unmap()
	p := store.HostPrefix(addr)
	var (
		h   store.Host
		err error
	)
	switch {
	case sc.Total >= r.DNSBLThreshold:
		reason := fmt.Sprintf("dnsbl: score %d >= %d: %s", sc.Total, r.DNSBLThreshold, sc)
		h, _, err = e.setHost(p, store.Black, store.SourceDNSBL, reason, e.cfg().BlackTTL, false)
	case sc.Total <= r.AllowThreshold:
		reason := fmt.Sprintf("dnswl: score %d <= %d: %s", sc.Total, r.AllowThreshold, sc)
		h, _, err = e.setHost(p, store.White, store.SourceDNSWL, reason, r.AllowTTL, false)
	default:
		return Verdict{Class: store.Grey, Reason: "dnsbl: score " + strconv.Itoa(sc.Total) + ": " + sc.String()}, nil
	}
	if err != nil {
		return Verdict{Class: store.Grey, Reason: "store unavailable"}, err
	}
	return verdictOf(h), nil
}
