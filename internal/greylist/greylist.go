// Package greylist decides, per delivery attempt, whether a triplet
// (client network, envelope sender, recipient) has earned its way through.
//
// A first attempt is deferred. A retry that comes no sooner than MinRetry
// and no later than RetryWindow after the first attempt passes: real mail
// servers retry on a schedule, most spam bots never come back. The client
// address is folded to its network (/24, /64 by default), because large
// senders retry from another address of the same pool.
//
// The package keeps no state of its own and never touches a socket: it reads
// and writes triplets through the store and reads time from the clock it is
// given, so a simulation can drive it over days of traffic in milliseconds.
package greylist

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"moat/internal/clock"
	"moat/internal/prefix"
	"moat/internal/store"
)

// Config holds the greylist windows.
type Config struct {
	MinRetry    time.Duration // a retry sooner than this is deferred again
	RetryWindow time.Duration // a first attempt is forgotten after this
	PassTTL     time.Duration // how long a passed triplet is remembered
	IPv4Prefix  int           // client network folding for IPv4 (24)
	IPv6Prefix  int           // client network folding for IPv6 (64)
	// PassOnNextRetry defers the retry that qualifies once more and
	// lets the triplet pass at its next attempt, as spamd does: there the
	// qualifying retry only marks the host, and its scanner whitelists it
	// for the connection after. It costs every first mail one more retry.
	PassOnNextRetry bool
}

// Outcome is what the greylist says of one attempt.
type Outcome uint8

const (
	// Defer: answer 451 4.7.1 and remember the attempt.
	Defer Outcome = iota
	// Pass: the retry qualifies.
	Pass
)

func (o Outcome) String() string {
	if o == Pass {
		return "pass"
	}
	return "defer"
}

// Result is an Outcome with the reason an operator reads in the log.
type Result struct {
	Outcome Outcome
	Reason  string
	Triplet store.Triplet
	// Delay is how long after the triplet's first attempt this one came
	// (0 for a first attempt).
	Delay time.Duration
	// FirstPass marks the attempt that let the triplet through: what a
	// legitimate sender waited is the Delay of its first pass, not of the
	// recipients that follow it through the opened door.
	FirstPass bool
}

// Greylist applies Config to triplets kept in a store.
type Greylist struct {
	conf  atomic.Pointer[Config] // replaced whole by SetConfig
	st    store.Store
	clock clock.Clock
}

// New returns a Greylist over st.
func New(cfg Config, st store.Store, c clock.Clock) *Greylist {
	g := &Greylist{st: st, clock: c}
	g.SetConfig(cfg)
	return g
}

// SetConfig replaces the windows, for a reload while sessions run. The
// triplets already stored keep the expiry they were given; the new
// windows apply from their next attempt.
func (g *Greylist) SetConfig(cfg Config) {
	if cfg.IPv4Prefix == 0 {
		cfg.IPv4Prefix = 24
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = 64
	}
	if cfg.PassTTL == 0 {
		cfg.PassTTL = cfg.RetryWindow
	}
	g.conf.Store(&cfg)
}

// Net folds a client address to its greylist network.
func (g *Greylist) Net(client netip.Addr) netip.Prefix {
	cfg := g.conf.Load()
	return prefix.Fold(client, cfg.IPv4Prefix, cfg.IPv6Prefix)
}

// Triplet builds the greylist key. sender and rcpt must already be
// normalised; the sender is further folded by NormalizeSender.
func (g *Greylist) Triplet(client netip.Addr, sender, rcpt string) store.Triplet {
	return store.Triplet{Net: g.Net(client), Sender: NormalizeSender(sender), Rcpt: rcpt}
}

// Check records one delivery attempt and says whether it passes.
func (g *Greylist) Check(client netip.Addr, sender, rcpt string) (Result, error) {
	return g.check(g.Triplet(client, sender, rcpt))
}

// check records one delivery attempt of triplet t.
func (g *Greylist) check(t store.Triplet) (Result, error) {
	cfg := g.conf.Load()
	now := g.clock.Now()
	a, ok, err := g.st.Triplet(t)
	if err != nil {
		return Result{Outcome: Defer, Reason: "store unavailable", Triplet: t}, err
	}
	if !ok {
		a = store.Attempt{First: now, Last: now, Count: 1, Expires: now.Add(cfg.RetryWindow)}
		return Result{Outcome: Defer, Reason: "first attempt", Triplet: t}, g.st.PutTriplet(t, a)
	}
	age := now.Sub(a.First)
	// Every attempt at min_retry or later passes, so the triplet had
	// passed before unless its last attempt came sooner than that.
	passedBefore := a.Last.Sub(a.First) >= cfg.MinRetry
	a.Last = now
	a.Count++
	if age < cfg.MinRetry {
		// Too soon: a bot hammering, or a sender with a very short
		// first retry. Keep the first-attempt time so the window is
		// measured from the first sight, as spamd and postgrey do.
		return Result{Outcome: Defer, Reason: "retry too soon (" + age.Round(time.Second).String() + ")", Triplet: t, Delay: age}, g.st.PutTriplet(t, a)
	}
	a.Expires = now.Add(cfg.PassTTL)
	if cfg.PassOnNextRetry {
		r, wait, first, err := g.qualify(t, a, age)
		if wait || err != nil {
			return r, err
		}
		passedBefore = !first
	}
	return Result{Outcome: Pass, Reason: "retried after " + age.Round(time.Second).String(), Triplet: t, Delay: age, FirstPass: !passedBefore},
		g.st.PutTriplet(t, a)
}

// Keep remembers a triplet the greylist has seen for as long as a passed
// one (PassTTL from now), so that its next attempt after MinRetry passes
// even when it comes after the retry window. Observe mode keeps the
// triplets of the messages the backend accepted this way. A triplet never
// seen is not kept: Keep records no attempt.
func (g *Greylist) Keep(t store.Triplet) error {
	a, ok, err := g.st.Triplet(t)
	if err != nil || !ok {
		return err
	}
	if exp := g.clock.Now().Add(g.conf.Load().PassTTL); a.Expires.Before(exp) {
		a.Expires = exp
		return g.st.PutTriplet(t, a)
	}
	return nil
}

// qualifiedKind is the store record kind that marks a triplet whose retry
// qualified under PassOnNextRetry: its next attempt passes. The record
// lives as long as the triplet (PassTTL from the last qualifying attempt);
// its value says whether the triplet has passed since.
const qualifiedKind = "qualified"

var (
	qualified = []byte{0} // deferred once, not passed yet
	passed    = []byte{1} // passed since
)

// qualify applies PassOnNextRetry to a retry that came late enough (a, with
// its new expiry): the first such retry is deferred and marks the triplet;
// from then on its attempts pass. wait says the attempt was deferred, first
// that this is the triplet's first pass.
func (g *Greylist) qualify(t store.Triplet, a store.Attempt, age time.Duration) (r Result, wait, first bool, err error) {
	id := t.ID().String()
	v, marked, err := g.st.Get(qualifiedKind, id)
	if err != nil {
		return Result{Outcome: Defer, Reason: "store unavailable", Triplet: t}, true, false, err
	}
	if !marked {
		if err := g.st.Put(qualifiedKind, id, qualified, a.Expires); err != nil {
			return Result{Outcome: Defer, Reason: "store unavailable", Triplet: t}, true, false, err
		}
		r = Result{Outcome: Defer, Reason: "retry qualified after " + age.Round(time.Second).String() + ", passes at the next attempt", Triplet: t, Delay: age}
		return r, true, false, g.st.PutTriplet(t, a)
	}
	if err := g.st.Put(qualifiedKind, id, passed, a.Expires); err != nil {
		return Result{Outcome: Defer, Reason: "store unavailable", Triplet: t}, true, false, err
	}
	return Result{}, false, len(v) == 1 && v[0] == qualified[0], nil
}

// NormalizeSender folds the parts of an envelope sender that change from
// one attempt to the next for the same mail: VERP and bounce-address
// tagging (BATV "prvs=…=user@dom") and plus-extensions carry a per-message
// or per-day token, so a retry of the same mail would otherwise never match
// its first attempt.
func NormalizeSender(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	local, domain := s[:at], s[at:]
	// BATV: prvs=TAG=local or prvs=local/TAG; SRS-like btv1==…==local.
	for _, p := range []string{"prvs=", "msprvs1=", "btv1=="} {
		if strings.HasPrefix(local, p) {
			rest := local[len(p):]
			if i := strings.LastIndex(rest, "="); i >= 0 {
				local = rest[i+1:]
			} else if i := strings.IndexByte(rest, '/'); i >= 0 {
				local = rest[:i]
			}
			break
		}
	}
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	// Digits-only runs are per-message counters in VERP-style senders
	// (bounce-12345-67@…); fold them so retries match.
	local = foldDigits(local)
	return local + domain
}

func foldDigits(s string) string {
	var b strings.Builder
	run := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			run++
			continue
		}
		if run > 0 {
			if run >= 4 {
				b.WriteByte('#')
			} else {
				b.WriteString(s[i-run : i])
			}
			run = 0
		}
		b.WriteByte(c)
	}
	if run > 0 {
		if run >= 4 {
			b.WriteByte('#')
		} else {
			b.WriteString(s[len(s)-run:])
		}
	}
	return b.String()
}

// Import merges an attempt carried over from another greylister (spamd,
// postgrey) into what the greylist remembers of the triplet (client,
// sender, rcpt); sender and rcpt are normalised addresses, as for Check.
// The earliest first sight, the latest attempt, the most attempts and the
// latest expiry stand, so importing a file twice, or the files of two
// greylisters, loses nothing. An attempt without an expiry gets the
// greylist's own: the retry window after its first sight when it was
// never retried after MinRetry, PassTTL after its last attempt when it
// was. Import reports false, storing nothing, when that expiry has passed.
func (g *Greylist) Import(client netip.Addr, sender, rcpt string, a store.Attempt) (bool, error) {
	t := g.Triplet(client, sender, rcpt)
	if a.Last.Before(a.First) {
		a.Last = a.First
	}
	if a.Expires.IsZero() {
		cfg := g.conf.Load()
		a.Expires = a.First.Add(cfg.RetryWindow)
		if a.Last.Sub(a.First) >= cfg.MinRetry && a.Last.After(a.First) {
			a.Expires = a.Last.Add(cfg.PassTTL)
		}
	}
	if !a.Expires.After(g.clock.Now()) {
		return false, nil
	}
	old, ok, err := g.st.Triplet(t)
	if err != nil {
		return false, err
	}
	if ok {
		if old.First.Before(a.First) {
			a.First = old.First
		}
		if old.Last.After(a.Last) {
			a.Last = old.Last
		}
		a.Count = max(a.Count, old.Count)
		if old.Expires.After(a.Expires) {
			a.Expires = old.Expires
		}
	}
	return true, g.st.PutTriplet(t, a)
}
