package classify

import (
	"fmt"
	"net/netip"
	"time"

	"moat/internal/reputation"
	"moat/internal/store"
)

// escalate counts a new black host against its network and its AS, and
// blacklists the network (or marks the AS) when it reaches the threshold.
func (e *Engine) escalate(addr netip.Addr, now time.Time) {
	r := e.rep()
	if r == nil {
		return
	}
	n := r.Nets
	if n.Threshold > 0 {
		net := reputation.Network(addr, n.V4Prefix, n.V6Prefix)
		if c, ok := r.reached(r.nets, "net", net.String(), addr, now, n.Threshold); ok {
			h, ok, err := e.st.Host(net)
			// A network already black keeps its expiry; an operator's
			// entry for it stands (precedence.go).
			if err == nil && !(ok && h.Class == store.Black) {
				reason := fmt.Sprintf("network escalation: %d black hosts in %s within %s", c, net, n.Window)
				_, wrote, err := e.setHost(net, store.Black, store.SourceEscalation, reason, n.TTL, false)
				switch {
				case err != nil && r.Log != nil:
					r.Log.Warn("escalation: storing network", "net", net.String(), "err", err.Error())
				case wrote && r.Log != nil:
					r.Log.Info("escalation", "net", net.String(), "black_hosts", c, "ttl", n.TTL.String())
				}
			}
		}
	}
	if n.ASNThreshold > 0 && r.ASN != nil {
		a, ok := r.ASN.Lookup(addr)
		if !ok {
			return
		}
		if c, ok := r.reached(r.asns, "asn", a.String(), addr, now, n.ASNThreshold); ok {
			reason := fmt.Sprintf("ASN escalation: %s (%s) %d black hosts within %s", a, a.Name, c, n.Window)
			if err := e.st.Put(asnKind, a.String(), []byte(reason), now.Add(n.TTL)); err == nil {
				if r.Log != nil {
					r.Log.Info("escalation", "asn", a.String(), "name", a.Name, "black_hosts", c, "ttl", n.TTL.String())
				}
			}
		}
	}
}

// reached counts addr under key and reports whether the count reached
// threshold; the count then starts again, as the key is escalated. A
// count the store could not keep (Redis down) is logged and reaches
// nothing: at worst escalation comes a host later.
func (r *repState) reached(c *reputation.Counter, what, key string, addr netip.Addr, now time.Time, threshold int) (int, bool) {
	n, err := c.Add(key, addr, now)
	if err == nil && n >= threshold {
		err = c.Reset(key)
	}
	if err != nil && r.Log != nil {
		r.Log.Warn("escalation: counting a black host", what, key, "client", addr.String(), "err", err.Error())
	}
	return n, n >= threshold
}
