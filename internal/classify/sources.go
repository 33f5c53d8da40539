package classify

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/greylist"
	"moat/internal/reputation"
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
