// Package classify is the one place that turns evidence into a class.
//
// Every decision about a client host goes through an Engine: the class a
// connecting host gets (static lists, then what the store remembers), and
// what each piece of evidence from a session does to it — a trap hit or an
// early talk makes it black, a greylist retry makes it white. The Engine
// reads time only from its clock and never touches a socket, so the same
// logic runs inside the proxy and inside a simulation over days of traffic.
package classify

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/store"
	"moat/internal/traps"
)

// Verdict is a class and the reason for it.
type Verdict struct {
	Class  store.Class
	Reason string
	Static bool // from the configuration's lists, not from the store
}

// Config holds the policy that is not the greylist's.
type Config struct {
	Whitelist []netip.Prefix
	Blacklist []netip.Prefix
	BlackTTL  time.Duration // trap hit, early talk
	WhiteTTL  time.Duration // greylist pass; refreshed whenever the host is seen
	GreyTTL   time.Duration // how long a greylisted host is listed as grey (the retry window)
}

// Engine applies the policy.
type Engine struct {
	cfg   Config
	st    store.Store
	clock clock.Clock
	grey  *greylist.Greylist
	traps *traps.Set
	ev    evidence // reputation.go: network evidence and the history of class changes
}

// New returns an Engine.
func New(cfg Config, st store.Store, c clock.Clock, g *greylist.Greylist, t *traps.Set) *Engine {
	return &Engine{cfg: cfg, st: st, clock: c, grey: g, traps: t}
}

// Store returns the engine's store.
func (e *Engine) Store() store.Store { return e.st }

// Traps returns the engine's trap set.
func (e *Engine) Traps() *traps.Set { return e.traps }

// Classify returns the class of a connecting host. On a store error it
// returns Grey with the error: a grey host can only ever get 4xx replies
// from moat, so an outage never costs a message.
func (e *Engine) Classify(addr netip.Addr) (Verdict, error) {
	addr = addr.Unmap()
	for _, p := range e.cfg.Whitelist {
		if p.Contains(addr) {
			return Verdict{Class: store.White, Reason: "whitelist " + p.String(), Static: true}, nil
		}
	}
	for _, p := range e.cfg.Blacklist {
		if p.Contains(addr) {
			return Verdict{Class: store.Black, Reason: "blacklist " + p.String(), Static: true}, nil
		}
	}
	h, ok, err := e.st.Lookup(addr)
	if err != nil {
		return Verdict{Class: store.Grey, Reason: "store unavailable"}, err
	}
	if v, listed := e.networkVerdict(addr, ok, h); listed {
		return v, nil
	}
	if !ok {
		return Verdict{Class: store.Grey, Reason: "unknown"}, nil
	}
	return Verdict{Class: h.Class, Reason: h.Reason}, nil
}

// Seen records that a host connected. A white host's entry is refreshed
// (its white_ttl starts again), at most once a minute so a busy sender does
// not cost a write per connection.
func (e *Engine) Seen(addr netip.Addr, v Verdict) error {
	if v.Static || v.Class != store.White {
		return nil
	}
	p := store.HostPrefix(addr)
	h, ok, err := e.st.Host(p)
	if err != nil || !ok || h.Class != store.White {
		return err
	}
	now := e.clock.Now()
	if now.Sub(h.Last) < time.Minute {
		return nil
	}
	h.Last = now
	if !h.Expires.IsZero() {
		h.Expires = now.Add(e.cfg.WhiteTTL)
	}
	return e.st.PutHost(h)
}

// Action is what the dialog does with a MAIL or RCPT.
type Action uint8

const (
	Accept Action = iota // MAIL: go on
	Defer                // RCPT: 451 4.7.1, greylisted
	Pass                 // RCPT: the greylist retry qualified; hand the session to the backend
	Trap                 // MAIL or RCPT named a trap: the host is now black
)

func (a Action) String() string {
	return [...]string{"accept", "defer", "pass", "trap"}[a]
}

// Decision is an Action and its reason.
type Decision struct {
	Action Action
	Reason string
}

// Mail judges a MAIL FROM. sender is normalised ("" for <>).
func (e *Engine) Mail(client netip.Addr, sender string) (Decision, error) {
	if sender != "" && e.traps.Is(sender) {
		return e.trapHit(client, sender)
	}
	return Decision{Action: Accept}, nil
}

// Rcpt judges one RCPT TO of a grey host. sender and rcpt are normalised.
func (e *Engine) Rcpt(client netip.Addr, sender, rcpt string) (Decision, error) {
	if e.traps.Is(rcpt) {
		return e.trapHit(client, rcpt)
	}
	if d, ok := e.whiteNow(client); ok {
		return d, nil
	}
	r, err := e.greyCheck(client, sender, rcpt)
	if err != nil {
		return Decision{Action: Defer, Reason: r.Reason}, err
	}
	if r.Outcome == greylist.Defer {
		return Decision{Action: Defer, Reason: r.Reason}, e.touchGrey(client, r.Reason)
	}
	reason := "greylist: " + r.Reason
	if why, bad := e.badKarma(client); bad {
		// The message goes through, but the host stays grey.
		return Decision{Action: Pass, Reason: reason + "; not whitelisted: " + why}, nil
	}
	if err := e.setHost(store.HostPrefix(client), store.White, reason, e.cfg.WhiteTTL, false); err != nil {
		// The retry qualified; failing to remember it only costs
		// the sender another greylisting later. Let it through.
		return Decision{Action: Pass, Reason: reason}, err
	}
	return Decision{Action: Pass, Reason: reason}, nil
}

// touchGrey lists a greylisted host as grey (for "moat hosts list"), at
// most one write a minute per host. It never demotes a white or black host.
func (e *Engine) touchGrey(client netip.Addr, reason string) error {
	if e.cfg.GreyTTL <= 0 {
		return nil
	}
	p := store.HostPrefix(client)
	now := e.clock.Now()
	h, ok, err := e.st.Host(p)
	if err != nil {
		return err
	}
	if ok && (h.Class != store.Grey || now.Sub(h.Last) < time.Minute) {
		return nil
	}
	if !ok {
		h = store.Host{Prefix: p, Class: store.Grey, First: now}
	}
	h.Reason, h.Last, h.Expires = "greylisted: "+reason, now, now.Add(e.cfg.GreyTTL)
	return e.st.PutHost(h)
}

func (e *Engine) trapHit(client netip.Addr, trap string) (Decision, error) {
	reason := "trap hit <" + trap + ">"
	_ = e.st.Add(traps.HitCounter(trap), 1)
	err := e.setHost(store.HostPrefix(client), store.Black, reason, e.cfg.BlackTTL, true)
	// A minted bait address also names the host that harvested it.
	if h, ok := e.traps.Harvested(trap); ok && h.IP.Unmap() != client.Unmap() {
		if herr := e.setHost(store.HostPrefix(h.IP), store.Black, h.Reason(), e.cfg.BlackTTL, true); err == nil {
			err = herr
		}
	}
	return Decision{Action: Trap, Reason: reason}, err
}

// HeldTTL is how long moat remembers how many seconds a host spent in the
// tarpit.
const HeldTTL = 30 * 24 * time.Hour

// Held adds the time a host spent in the tarpit to its own total (shown by
// "moat hosts list") and to the grand total.
func (e *Engine) Held(client netip.Addr, d time.Duration) error {
	secs := int64(d.Round(time.Second) / time.Second)
	if err := e.st.Add("tarpit_seconds", secs); err != nil {
		return err
	}
	key := client.Unmap().String()
	var total int64
	if b, ok, err := e.st.Get("held", key); err != nil {
		return err
	} else if ok && len(b) == 8 {
		total = int64(binary.BigEndian.Uint64(b))
	}
	total += secs
	return e.st.Put("held", key, binary.BigEndian.AppendUint64(nil, uint64(total)), e.clock.Now().Add(HeldTTL))
}

// HeldSeconds returns the seconds a host spent in the tarpit.
func (e *Engine) HeldSeconds(client netip.Addr) int64 {
	b, ok, err := e.st.Get("held", client.Unmap().String())
	if err != nil || !ok || len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// EarlyTalker blacklists a host that spoke before the banner.
func (e *Engine) EarlyTalker(client netip.Addr) error {
	return e.setHost(store.HostPrefix(client), store.Black, "early talker", e.cfg.BlackTTL, true)
}

// Blacklist makes a host black for the black_ttl, for the given reason.
func (e *Engine) Blacklist(client netip.Addr, reason string) error {
	return e.setHost(store.HostPrefix(client), store.Black, reason, e.cfg.BlackTTL, true)
}

// SetClass is the operator's hand: it sets p's class with no expiry for
// white and black (an operator's word stands until the operator changes
// it), and makes it durable before returning.
func (e *Engine) SetClass(p netip.Prefix, c store.Class, reason string) error {
	if c == store.Grey {
		return e.Forget(p)
	}
	return e.setHost(p, c, reason, 0, true)
}

// Forget removes what the store remembers of p, making it grey again.
func (e *Engine) Forget(p netip.Prefix) error {
	if err := e.st.DeleteHost(p); err != nil {
		return err
	}
	e.record(p, Event{At: e.clock.Now(), Class: store.Grey.String(), Reason: "forgotten by operator"})
	return e.st.Flush(context.Background())
}

func (e *Engine) setHost(p netip.Prefix, c store.Class, reason string, ttl time.Duration, durable bool) error {
	now := e.clock.Now()
	h, ok, err := e.st.Host(p)
	if err != nil {
		return err
	}
	if !ok {
		h = store.Host{Prefix: p, First: now}
	}
	was := h.Class
	h.Class, h.Reason, h.Last = c, reason, now
	h.Expires = time.Time{}
	if ttl > 0 {
		h.Expires = now.Add(ttl)
	}
	if err := e.st.PutHost(h); err != nil {
		return fmt.Errorf("classify: %s %s: %w", c, p, err)
	}
	e.changed(p, was, ok, c, reason, now)
	if durable {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return e.st.Flush(ctx)
	}
	return nil
}
