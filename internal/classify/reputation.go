package classify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/greylist"
	"moat/internal/reputation"
	"moat/internal/store"
)

// Reputation is the evidence from outside the SMTP session that an Engine
// weighs: DNS lists, network escalation, imported network lists, the
// verdicts of the real mail server's filters and SPF-aware pools. Every
// field is optional; the zero Reputation weighs nothing.
type Reputation struct {
	DNSBL          *reputation.DNSBL // nil: no lookups
	DNSBLThreshold int               // a score at or above this makes a host black (default 3)
	AllowThreshold int               // a score at or below this makes it white without greylisting (default -1)
	AllowTTL       time.Duration     // how long a host listed white by a DNSWL stays white (default 1h)

	Drop *reputation.DropList  // imported network lists: black
	ASN  *reputation.ASNTable  // IP-to-AS table for escalation per AS
	Nets reputation.Escalation // escalation thresholds

	Karma reputation.KarmaPolicy
	Pools *greylist.Pools // nil: greylist by network only
	Log   *slog.Logger
}

// evidence is the Engine's reputation state. Its zero value weighs
// nothing but still keeps the history of class changes.
type evidence struct {
	cur atomic.Pointer[repState]
	hmu sync.Mutex // serialises read-modify-write of history records in this process
	kmu sync.Mutex // the same for karma records: two followers' verdicts must both count
}

// repState is one configuration of the evidence sources with its
// escalation counters. It is replaced whole, so SetReputation is safe
// while sessions run; the counts themselves are in the store and outlive
// it.
type repState struct {
	Reputation
	nets *reputation.Counter
	asns *reputation.Counter
}

// rep returns the current evidence sources, nil when none were set.
func (e *Engine) rep() *repState { return e.ev.cur.Load() }

// Store record kinds.
const (
	historyKind = "history"
	karmaKind   = "karma"
	asnKind     = "asn"
	maxHistory  = 50
	historyTTL  = 180 * 24 * time.Hour
)

// SetReputation gives the engine its evidence sources, replacing any
// earlier ones. The escalation counts are the store's: they carry over.
func (e *Engine) SetReputation(r Reputation) {
	if r.DNSBLThreshold == 0 {
		r.DNSBLThreshold = 3
	}
	if r.AllowThreshold == 0 {
		r.AllowThreshold = -1
	}
	if r.AllowTTL <= 0 {
		r.AllowTTL = time.Hour
	}
	if r.Karma == (reputation.KarmaPolicy{}) {
		r.Karma = reputation.DefaultKarma()
	}
	r.Nets = r.Nets.WithDefaults()
	e.ev.cur.Store(&repState{Reputation: r, nets: reputation.NewCounter(e.st, "net", r.Nets.Window), asns: reputation.NewCounter(e.st, "asn", r.Nets.Window)})
}

// networkVerdict is what imported lists and escalated autonomous systems
// say of addr; ok is false when they say nothing.
func (e *Engine) networkVerdict(addr netip.Addr, stored bool, h store.Host) (Verdict, bool) {
	r := e.rep()
	if r == nil {
		return Verdict{}, false
	}
	if _, reason, ok := r.Drop.Lookup(addr); ok {
		// Only an operator's own white entry stands against the list.
		if !(stored && h.Class == store.White && SourceOf(h) == store.SourceOperator) {
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
		h, _, err = e.setHost(p, store.Black, store.SourceDNSBL, reason, e.cfg.BlackTTL, false)
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

// greyCheck is the greylist check, with SPF-aware pools when configured.
func (e *Engine) greyCheck(client netip.Addr, sender, rcpt string) (greylist.Result, error) {
	if r := e.rep(); r != nil && r.Pools != nil {
		return e.grey.CheckPool(r.Pools, client, sender, rcpt)
	}
	return e.grey.Check(client, sender, rcpt)
}

// FeedbackResult says what a verdict did.
type FeedbackResult struct {
	IP      string  `json:"ip"`
	Karma   float64 `json:"karma"`
	Class   string  `json:"class"`
	Changed bool    `json:"changed"`
	Reason  string  `json:"reason"`
}

// Feedback weighs a content filter's verdict on a message from fb.IP. The
// host's karma moves (spam down, ham up, both decaying with the
// half-life); a white host whose karma falls below grey_below is grey
// again (greylisted, never rejected), and any host whose karma falls below
// black_below is black. Hosts on the configuration's lists and hosts an
// operator set by hand keep their class: the operator's word stands.
func (e *Engine) Feedback(fb reputation.Feedback) (FeedbackResult, error) {
	pol := reputation.DefaultKarma()
	if r := e.rep(); r != nil {
		pol = r.Karma
	}
	addr := fb.IP.Unmap()
	if !addr.IsValid() {
		return FeedbackResult{}, fmt.Errorf("feedback: no client address")
	}
	p := store.HostPrefix(addr)
	key := hostKey(p)
	now := e.clock.Now()
	k, err := e.addKarma(key, pol, fb.Verdict, now)
	if err != nil {
		return FeedbackResult{}, err
	}
	what := fmt.Sprintf("%s, karma %.2f", fb, k.Score)
	res := FeedbackResult{IP: addr.String(), Karma: k.Score, Reason: what}

	v, err := e.Classify(addr)
	if err != nil {
		return res, err
	}
	res.Class = v.Class.String()
	h, stored, err := e.st.Host(p)
	if err != nil {
		return res, err
	}
	operator := stored && SourceOf(h) == store.SourceOperator
	target, ttl := v.Class, time.Duration(0)
	if fb.Verdict == reputation.Spam && !v.Static && !operator {
		switch {
		case k.Score < pol.BlackBelow && v.Class != store.Black:
			target, ttl = store.Black, e.cfg.BlackTTL
		case k.Score < pol.GreyBelow && v.Class == store.White && stored:
			target, ttl = store.Grey, e.cfg.GreyTTL
			if ttl <= 0 {
				ttl = 24 * time.Hour
			}
		}
	}
	if target == v.Class {
		e.record(p, Event{At: now, Reason: "feedback: " + what})
		return res, nil
	}
	reason := "feedback: " + what
	nh, wrote, err := e.setHost(p, target, store.SourceFeedback, reason, ttl, true)
	if err != nil {
		return res, err
	}
	if !wrote {
		// Stronger evidence stands; the verdict is kept in the history.
		e.record(p, Event{At: now, Reason: reason})
		return res, nil
	}
	res.Class, res.Changed, res.Reason = nh.Class.String(), true, reason
	return res, nil
}

// addKarma weighs one verdict into key's karma record.
func (e *Engine) addKarma(key string, pol reputation.KarmaPolicy, v reputation.Verdict, now time.Time) (reputation.Karma, error) {
	e.ev.kmu.Lock()
	defer e.ev.kmu.Unlock()
	var k reputation.Karma
	if b, ok, err := e.st.Get(karmaKind, key); err != nil {
		return k, err
	} else if ok {
		k, _ = reputation.UnmarshalKarma(b)
	}
	k = pol.Add(k, v, now)
	keep := 10 * pol.HalfLife // by then the karma is below a thousandth of itself
	return k, e.st.Put(karmaKind, key, k.Marshal(), now.Add(keep))
}

// badKarma reports a host whose filter verdicts put its karma below
// grey_below: a greylist pass lets its message through but does not make
// it white again, or one old triplet would undo every spam verdict.
func (e *Engine) badKarma(client netip.Addr) (string, bool) {
	r := e.rep()
	if r == nil {
		return "", false
	}
	k, ok, err := e.KarmaOf(client)
	if err != nil || !ok || k >= r.Karma.GreyBelow {
		return "", false
	}
	return fmt.Sprintf("karma %.2f below %g", k, r.Karma.GreyBelow), true
}

// KarmaOf returns addr's karma decayed to now.
func (e *Engine) KarmaOf(addr netip.Addr) (float64, bool, error) {
	pol := reputation.DefaultKarma()
	if r := e.rep(); r != nil {
		pol = r.Karma
	}
	b, ok, err := e.st.Get(karmaKind, hostKey(store.HostPrefix(addr)))
	if err != nil || !ok {
		return 0, false, err
	}
	k, err := reputation.UnmarshalKarma(b)
	if err != nil {
		return 0, false, err
	}
	return k.Now(e.clock.Now(), pol.HalfLife), true, nil
}

// Event is one entry of a host's evidence history.
type Event struct {
	At     time.Time `json:"at"`
	Class  string    `json:"class,omitempty"` // the class it moved to; "" for evidence that changed none
	Reason string    `json:"reason"`
}

// History returns what moved p between classes, oldest first (at most
// the last 50 events, kept 180 days).
func (e *Engine) History(p netip.Prefix) ([]Event, error) {
	b, ok, err := e.st.Get(historyKind, hostKey(p))
	if err != nil || !ok {
		return nil, err
	}
	var evs []Event
	if err := json.Unmarshal(b, &evs); err != nil {
		return nil, fmt.Errorf("classify: history of %s: %w", p, err)
	}
	return evs, nil
}

// record appends ev to p's history. A failure to record costs only the
// record, never the decision, so it is not reported.
func (e *Engine) record(p netip.Prefix, ev Event) {
	e.ev.hmu.Lock()
	defer e.ev.hmu.Unlock()
	evs, _ := e.History(p)
	evs = append(evs, ev)
	if len(evs) > maxHistory {
		evs = evs[len(evs)-maxHistory:]
	}
	b, err := json.Marshal(evs)
	if err != nil {
		return
	}
	_ = e.st.Put(historyKind, hostKey(p), b, ev.At.Add(historyTTL))
}

// changed is called after every store write of a class: it records class
// changes in the history and feeds network escalation. A trap or bait hit
// counts towards escalation only from a host that was grey and unknown: a
// hit through a vouched-for host is refused, not blacklisted, and a host
// that was already listed for something else adds nothing new about its
// network.
func (e *Engine) changed(p netip.Prefix, old store.Host, existed bool, h store.Host) {
	if !existed || old.Class != h.Class {
		e.record(p, Event{At: h.Last, Class: h.Class.String(), Reason: h.Reason})
	}
	if h.Class != store.Black || !p.IsSingleIP() || existed && old.Class == store.Black {
		return
	}
	if Proves(h.Source) && existed && SourceOf(old) != store.SourceGreylist {
		return
	}
	e.escalate(p.Addr(), h.Last)
}

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

// hostKey is the record key of a host or network: the address for a
// single host, the CIDR for a network.
func hostKey(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
