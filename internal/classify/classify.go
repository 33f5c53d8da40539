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
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/reputation"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/traps"
)

// Verdict is a class, the kind of evidence behind it and the reason.
type Verdict struct {
	Class  store.Class
	Source store.Source
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
	conf  atomic.Pointer[Config] // replaced whole by SetConfig: a reload while sessions run
	st    store.Store
	clock clock.Clock
	grey  *greylist.Greylist
	traps *traps.Set
	ev    evidence // reputation.go: network evidence and the history of class changes
	hooks Hooks    // hooks.go: what the metrics hear of

	onChange atomic.Pointer[func(netip.Prefix)] // white.go: who hears of host changes
}

// New returns an Engine.
func New(cfg Config, st store.Store, c clock.Clock, g *greylist.Greylist, t *traps.Set) *Engine {
	e := &Engine{st: st, clock: c, grey: g, traps: t}
	e.SetConfig(cfg)
	return e
}

// SetConfig replaces the policy. A decision under way finishes with the
// policy it started with.
func (e *Engine) SetConfig(cfg Config) { e.conf.Store(&cfg) }

// cfg is the policy in force.
func (e *Engine) cfg() *Config { return e.conf.Load() }

// Store returns the engine's store.
func (e *Engine) Store() store.Store { return e.st }

// Traps returns the engine's trap set.
func (e *Engine) Traps() *traps.Set { return e.traps }

// Classify returns the class of a connecting host. On a store error it
// returns Grey with the error: a grey host can only ever get 4xx replies
// from moat, so an outage never costs a message.
//
// The configuration's whitelist wins, then its blacklist, except that an
// operator's white entry in the store ("moat hosts white") releases an
// address from the blacklist, as it does from imported network lists: a
// host deferred by a blacklist entry can be let through without editing
// the file and restarting.
func (e *Engine) Classify(addr netip.Addr) (Verdict, error) {
	addr = addr.Unmap()
	v, listed := e.listed(addr)
	if listed && v.Class == store.White {
		return v, nil
	}
	h, ok, err := e.st.Lookup(addr)
	switch {
	case err != nil && listed:
		return v, nil
	case err != nil:
		return Verdict{Class: store.Grey, Reason: "store unavailable"}, err
	}
	return e.verdictWith(addr, v, listed, h, ok), nil
}

// verdictWith is the class of addr given what the configuration's lists
// say of it (v; listed false: nothing) and its stored entry (stored false:
// none): Classify's rule, also the kernel bypass's (whiteEntry).
func (e *Engine) verdictWith(addr netip.Addr, v Verdict, listed bool, h store.Host, stored bool) Verdict {
	if listed {
		if v.Class == store.Black && operatorWhite(h, stored) {
			return verdictOf(h)
		}
		return v
	}
	return e.storedVerdict(addr, h, stored)
}

// operatorWhite reports whether the stored entry h is an operator's own
// white entry, the only one that stands against the configuration's
// blacklist and imported network lists.
func operatorWhite(h store.Host, stored bool) bool {
	return stored && h.Class == store.White && SourceOf(h) == store.SourceOperator
}

// listed is what the configuration's lists say of addr; ok is false when
// they say nothing.
func (e *Engine) listed(addr netip.Addr) (Verdict, bool) {
	for _, p := range e.cfg().Whitelist {
		if p.Contains(addr) {
			return Verdict{Class: store.White, Source: store.SourceOperator, Reason: "whitelist " + p.String(), Static: true}, true
		}
	}
	for _, p := range e.cfg().Blacklist {
		if p.Contains(addr) {
			return Verdict{Class: store.Black, Source: store.SourceOperator, Reason: "blacklist " + p.String(), Static: true}, true
		}
	}
	return Verdict{}, false
}

// storedVerdict is the class of addr, which the lists leave open, given
// the store's entry for it (stored false: none).
func (e *Engine) storedVerdict(addr netip.Addr, h store.Host, stored bool) Verdict {
	if v, listed := e.networkVerdict(addr, stored, h); listed {
		return v
	}
	if !stored {
		return Verdict{Class: store.Grey, Reason: "unknown"}
	}
	return verdictOf(h)
}

// verdictOf is the verdict a stored entry gives.
func verdictOf(h store.Host) Verdict {
	return Verdict{Class: h.Class, Source: SourceOf(h), Reason: h.Reason}
}

// Seen records that a host connected. A white host's entry is refreshed
// (its white_ttl starts again when it earned it by accepted mail), at most
// once a minute so a busy sender does not cost a write per connection.
func (e *Engine) Seen(addr netip.Addr, v Verdict) error {
	if v.Static || v.Class != store.White {
		return nil
	}
	now := e.clock.Now()
	p := store.HostPrefix(addr)
	_, wrote, err := e.st.UpdateHost(p, func(h store.Host, ok bool) (store.Host, bool) {
		if !ok || h.Class != store.White || now.Sub(h.Last) < time.Minute {
			return h, false
		}
		h.Last = now
		if src := SourceOf(h); !h.Expires.IsZero() && (src == store.SourceAccepted || src == store.SourceImport) {
			h.Expires = now.Add(e.cfg().WhiteTTL)
		}
		return h, true
	})
	if wrote {
		// The expiry moved: a kernel bypass keeps its element as long.
		e.notify(p)
	}
	return err
}

// Action is what the dialog does with a MAIL or RCPT.
type Action uint8

const (
	Accept Action = iota // MAIL: go on
	Defer                // RCPT: 451 4.7.1, greylisted (or the store could not be asked)
	Pass                 // RCPT: the greylist retry qualified, or the host is white: the backend decides
	Trap                 // MAIL or RCPT named a trap: the host is now black
	Black                // the host is black now (another connection, the operator): to the tarpit
	Refuse               // MAIL or RCPT named a trap, but the host is vouched for: refuse with 5xx, not blacklisted
)

func (a Action) String() string {
	return [...]string{"accept", "defer", "pass", "trap", "black", "refuse"}[a]
}

// Decision is an Action, the kind of evidence behind it and its reason.
type Decision struct {
	Action Action
	Source store.Source // for Trap and Black: why the host is black
	Reason string
}

// Mail judges a MAIL FROM. sender is normalised ("" for <>). The host's
// class is read again: it may have turned black since the session began.
func (e *Engine) Mail(client netip.Addr, sender string) (Decision, error) {
	if sender != "" && e.traps.Is(sender) {
		return e.trapHit(client, "", sender)
	}
	if d, ok := e.blackNow(client); ok {
		return d, nil
	}
	return Decision{Action: Accept}, nil
}

// Rcpt judges one RCPT TO of a grey host's session that has not passed the
// greylist. sender and rcpt are normalised. A pass lets the message go to
// the backend; it does not make the host white (Accepted does that).
func (e *Engine) Rcpt(client netip.Addr, sender, rcpt string) (Decision, error) {
	if e.traps.Is(rcpt) {
		return e.trapHit(client, sender, rcpt)
	}
	v, err := e.Classify(client)
	if err != nil {
		return Decision{Action: Defer, Reason: "store unavailable"}, err
	}
	switch v.Class {
	case store.Black:
		return Decision{Action: Black, Source: v.Source, Reason: v.Reason}, nil
	case store.White:
		return Decision{Action: Pass, Reason: "white: " + v.Reason}, nil
	}
	r, err := e.greyCheck(client, sender, rcpt)
	if err != nil {
		return Decision{Action: Defer, Reason: r.Reason}, err
	}
	if e.hooks.Greylist != nil {
		e.hooks.Greylist(r)
	}
	if r.Outcome == greylist.Defer {
		return Decision{Action: Defer, Reason: r.Reason}, e.touchGrey(client, r.Reason)
	}
	return Decision{Action: Pass, Reason: "greylist: " + r.Reason}, nil
}

// RcptPassed judges one RCPT TO of a session that has already passed: no
// greylisting, but traps and the host's class hold at every recipient.
// When the store cannot be asked the recipient is deferred: moat cannot
// know whether the host turned black.
func (e *Engine) RcptPassed(client netip.Addr, sender, rcpt string) (Decision, error) {
	if e.traps.Is(rcpt) {
		return e.trapHit(client, sender, rcpt)
	}
	d, err := e.Data(client)
	if d.Action == Accept {
		d = Decision{Action: Pass, Reason: "passed"}
	}
	return d, err
}

// blackNow reports a host that is black now. A store error is no
// verdict: the caller's next step (greylisting, or the backend) decides.
func (e *Engine) blackNow(client netip.Addr) (Decision, bool) {
	v, err := e.Classify(client)
	if err != nil || v.Class != store.Black {
		return Decision{}, false
	}
	return Decision{Action: Black, Source: v.Source, Reason: v.Reason}, true
}

// Accepted is told that the backend accepted a message (250 at the end of
// DATA) from client in a session that passed the greylist: the retry was
// successful, and the host becomes white ("those that successfully retry
// are whitelisted") — unless stronger evidence says otherwise
// (precedence.go) or its filter verdicts put its karma below grey_below.
// The accepted message is remembered too: it vouches for the host, and
// for the sender's SPF pool, should a trap ever be named through it.
func (e *Engine) Accepted(client netip.Addr, sender, reason string) (Verdict, error) {
	p := store.HostPrefix(client)
	now := e.clock.Now()
	e.vouch(hostKey(p), now)
	if d := e.poolDomain(client, sender); d != "" {
		e.vouch("@"+d, now)
	}
	reason = "message accepted after " + reason
	if why, bad := e.badKarma(client); bad {
		e.record(p, Event{At: now, Reason: reason + "; not whitelisted: " + why})
		v, err := e.Classify(client)
		return v, err
	}
	h, _, err := e.setHost(p, store.White, store.SourceAccepted, reason, e.cfg().WhiteTTL, false)
	if err != nil {
		return Verdict{Class: store.Grey, Reason: "store unavailable"}, err
	}
	return verdictOf(h), nil
}

// Delivered is told, in observe mode, that the backend accepted a message
// from client (its sender and the normalised recipients the backend took)
// that enforce mode would have greylisted. One accepted message does not
// show that the host retries, so it is not whitened and nothing vouches
// for it (a trap named through it later still blacklists it); it stays
// grey, but with history: the message's triplets are kept as long as a
// passed one (greylist.white_ttl), so once moat enforces, the same sender
// writing to the same recipients passes at once instead of waiting out
// the greylist, and "moat hosts list" shows it grey with why.
func (e *Engine) Delivered(client netip.Addr, sender string, rcpts []string) error {
	var errs []error
	for _, r := range rcpts {
		errs = append(errs, e.grey.Keep(e.greyTriplet(client, sender, r)))
	}
	reason := "observed: the backend accepted a message that enforce mode would have greylisted"
	p := store.HostPrefix(client)
	_, wrote, err := e.setHost(p, store.Grey, store.SourceGreylist, reason, e.cfg().WhiteTTL, false)
	if wrote {
		e.record(p, Event{At: e.clock.Now(), Reason: reason})
	}
	return errors.Join(append(errs, err)...)
}

// touchGrey lists a greylisted host as grey (for "moat hosts list"), at
// most one write a minute per host. It never demotes a white or black host.
func (e *Engine) touchGrey(client netip.Addr, reason string) error {
	if e.cfg().GreyTTL <= 0 {
		return nil
	}
	now := e.clock.Now()
	n := store.Host{Class: store.Grey, Source: store.SourceGreylist, Reason: "greylisted: " + reason,
		First: now, Last: now, Expires: now.Add(e.cfg().GreyTTL)}
	p := store.HostPrefix(client)
	_, wrote, err := e.st.UpdateHost(p, func(h store.Host, ok bool) (store.Host, bool) {
		if ok && (h.Class != store.Grey || !replaces(n, h) || now.Sub(h.Last) < time.Minute) {
			return h, false
		}
		if ok {
			n.First = h.First
		}
		return n, true
	})
	if wrote {
		e.notify(p)
	}
	return err
}

// trapHit weighs a trap named in MAIL or RCPT. A grey, unknown host that
// writes to a trap is a bot and black at once (the founding rule). A host
// that is vouched for — it is white, or has had mail accepted, or speaks
// for a sender domain whose SPF pool has — is not blacklisted by one hit:
// big providers relay their users' mail, an attacker's included, and
// blacklisting the provider would lose everyone else's. Its message is
// refused (5xx: its user learns of it), it loses karma like for a spam
// verdict, and the hit is recorded for the operator.
func (e *Engine) trapHit(client netip.Addr, sender, trap string) (Decision, error) {
	reason := "trap hit <" + trap + ">"
	src := store.SourceTrap
	_ = e.st.Add(traps.HitCounter(trap), 1)
	var err error
	// A minted bait address also names the host that harvested it.
	if h, ok := e.traps.Harvested(trap); ok {
		src = store.SourceBait
		if h.IP.Unmap() != client.Unmap() {
			_, _, err = e.setHost(store.HostPrefix(h.IP), store.Black, store.SourceBait, h.Reason(), e.cfg().BlackTTL, true)
		}
	}
	why, vouched := e.vouched(client, sender)
	if e.hooks.TrapHit != nil {
		e.hooks.TrapHit(vouched)
	}
	if vouched {
		p := store.HostPrefix(client)
		_, ferr := e.Feedback(reputation.Feedback{IP: client, Verdict: reputation.Spam, Source: reason})
		e.record(p, Event{At: e.clock.Now(), Reason: reason + ": refused, not blacklisted: " + why})
		return Decision{Action: Refuse, Source: src, Reason: reason + "; vouched for: " + why}, errors.Join(err, ferr)
	}
	_, _, herr := e.setHost(store.HostPrefix(client), store.Black, src, reason, e.cfg().BlackTTL, true)
	return Decision{Action: Trap, Source: src, Reason: reason}, errors.Join(herr, err)
}

// TrapLogged weighs a trap that the real mail server was asked for, as its
// log tells: a host that bypasses moat in the kernel, or reached the
// server some other way, wrote to it. rcpt is normalised. It is the same
// evidence as a trap named to moat and weighs the same (trapHit): a host
// nobody vouches for is black; a vouched-for host — every white host is —
// is not blacklisted by one hit but loses karma like for a spam verdict,
// which with the default karma policy makes a white host grey at once (it
// leaves the bypass and meets the greylist) and black at a second hit.
func (e *Engine) TrapLogged(client netip.Addr, rcpt string) (Decision, error) {
	if !e.traps.Is(rcpt) {
		return Decision{Action: Accept}, nil
	}
	return e.trapHit(client.Unmap(), "", rcpt)
}

// EarlyTalker blacklists a host that spoke before the banner.
func (e *Engine) EarlyTalker(client netip.Addr, reason string) error {
	_, _, err := e.setHost(store.HostPrefix(client), store.Black, store.SourceEarlyTalk, reason, e.cfg().BlackTTL, true)
	return err
}

// Smuggler blacklists a host that ended a line or a message in a way only
// a lax receiver would take (bare CR, LF or NUL in DATA).
func (e *Engine) Smuggler(client netip.Addr, what string) error {
	_, _, err := e.setHost(store.HostPrefix(client), store.Black, store.SourceSmuggling, "smuggling: "+what, e.cfg().BlackTTL, true)
	return err
}

// Relay blacklists a host that made a relay attempt (RelayAttempt) by
// naming rcpt, as the client wrote it, unless stronger evidence stands
// (precedence.go: an operator's entry does).
func (e *Engine) Relay(client netip.Addr, rcpt string) error {
	reason := "relay attempt"
	if n, err := smtp.Normalize(rcpt); err == nil {
		reason += " to " + smtp.Domain(n)
	}
	return e.Blacklist(client, store.SourceRelay, reason)
}

// Blacklist makes a host black for the black_ttl, for the given source and
// reason, unless stronger evidence stands (precedence.go).
func (e *Engine) Blacklist(client netip.Addr, src store.Source, reason string) error {
	_, _, err := e.setHost(store.HostPrefix(client), store.Black, src, reason, e.cfg().BlackTTL, true)
	return err
}

// SetClass is the operator's hand: it sets p's class with no expiry for
// white and black (an operator's word stands until the operator changes
// it), whatever evidence was there, and makes it durable before returning.
func (e *Engine) SetClass(p netip.Prefix, c store.Class, reason string) error {
	if c == store.Grey {
		return e.Forget(p)
	}
	_, _, err := e.update(p, store.Host{Class: c, Source: store.SourceOperator, Reason: reason}, 0, true, true)
	return err
}

// Forget removes what the store remembers of p, making it grey again.
func (e *Engine) Forget(p netip.Prefix) error {
	if err := e.st.DeleteHost(p); err != nil {
		return err
	}
	e.notify(p)
	e.record(p, Event{At: e.clock.Now(), Class: store.Grey.String(), Reason: "forgotten by operator"})
	return e.st.Flush(context.Background())
}

// setHost records evidence that p is of class c: it is written unless the
// stored entry is stronger evidence (precedence.go). It returns the entry
// as it stands afterwards and whether the evidence was written.
func (e *Engine) setHost(p netip.Prefix, c store.Class, src store.Source, reason string, ttl time.Duration, durable bool) (store.Host, bool, error) {
	return e.update(p, store.Host{Class: c, Source: src, Reason: reason}, ttl, false, durable)
}

// update writes n under p, atomically against every other class change
// of p, unless force is off and the stored entry is stronger. The history
// and network escalation hear of every change.
func (e *Engine) update(p netip.Prefix, n store.Host, ttl time.Duration, force, durable bool) (store.Host, bool, error) {
	now := e.clock.Now()
	n.Prefix, n.First, n.Last = p, now, now
	if ttl > 0 {
		n.Expires = now.Add(ttl)
	}
	var (
		old     store.Host
		existed bool
	)
	h, wrote, err := e.st.UpdateHost(p, func(o store.Host, ok bool) (store.Host, bool) {
		old, existed = o, ok
		if ok && !force && !replaces(n, o) {
			return o, false
		}
		w := n
		if ok {
			w.First = o.First
		}
		return w, true
	})
	if err != nil {
		return h, false, fmt.Errorf("classify: %s %s: %w", n.Class, p, err)
	}
	if !wrote {
		return h, false, nil
	}
	e.notify(p)
	e.changed(p, old, existed, h)
	if durable {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return h, true, e.st.Flush(ctx)
	}
	return h, true, nil
}

// greyCheck is the greylist check, with SPF-aware pools when configured.
func (e *Engine) greyCheck(client netip.Addr, sender, rcpt string) (greylist.Result, error) {
	return e.grey.CheckPool(e.pools(), client, sender, rcpt)
}

// greyTriplet is the key greyCheck gives an attempt.
func (e *Engine) greyTriplet(client netip.Addr, sender, rcpt string) store.Triplet {
	t, _ := e.grey.TripletPool(e.pools(), client, sender, rcpt)
	return t
}

// pools returns the SPF-aware pools, nil when they are off.
func (e *Engine) pools() *greylist.Pools {
	if r := e.rep(); r != nil {
		return r.Pools
	}
	return nil
}
