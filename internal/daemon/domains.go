package daemon

import (
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"moat/internal/config"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/traps"
)

// ourDomains is what moat knows of the domains the backend takes mail for,
// to tell a relay attempt (a black host naming another domain, which
// proves a bot and is told "queued") from mail for us: the configuration's
// domains, and the domains the backend itself accepted a recipient at
// during a hand-off. The second can only make fewer relay verdicts, never
// more, so a domain the operator forgot to list stops being a relay target
// as soon as the backend is seen to take mail there, and moat says so once
// (the log line names the client, in case the backend relays for it).
// Learnt domains live in the store for seenTTL (shared by every MX with
// Redis), at most maxSeenDomains of them.
type ourDomains struct {
	log *slog.Logger
	now func() time.Time

	conf    atomic.Pointer[map[string]bool] // domains, folded; empty: no relay check
	learned *traps.Domains                  // folded
}

const (
	kindOurDomain  = "ourdomain" // key: a domain the backend accepted a recipient at; value: empty
	seenTTL        = 90 * 24 * time.Hour
	maxSeenDomains = 1000
)

func newOurDomains(st store.Store, log *slog.Logger, now func() time.Time) *ourDomains {
	o := &ourDomains{log: log, now: now}
	o.conf.Store(&map[string]bool{})
	// A shared store down at start teaches nothing now; the backend's
	// next acceptance does.
	o.learned, _ = traps.NewDomains(st, kindOurDomain, seenTTL, maxSeenDomains)
	return o
}

func foldDomain(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

// set takes the configuration's domains (at start and at every reload).
func (o *ourDomains) set(cfg *config.Config) {
	m := make(map[string]bool, len(cfg.Domains))
	for _, d := range cfg.Domains {
		m[foldDomain(d)] = true
	}
	o.conf.Store(&m)
}

// ours is the relay check's idea of our domains for cfg: nil when cfg lists
// none, so that nothing is a relay attempt.
func (o *ourDomains) ours(cfg *config.Config) func(domain string) bool {
	if len(cfg.Domains) == 0 {
		return nil
	}
	return o.is
}

// is reports whether domain, as a client wrote it, is ours.
func (o *ourDomains) is(domain string) bool {
	d := foldDomain(domain)
	return (*o.conf.Load())[d] || o.learned.Has(d)
}

// backendRcpt is the dialog's hook: a recipient the backend accepted is at
// one of its domains.
func (o *ourDomains) backendRcpt(client netip.Addr, rcpt string, r smtp.Reply) {
	d := foldDomain(smtp.Domain(rcpt))
	if r.Code/100 != 2 || d == "" || d[0] == '[' {
		return
	}
	conf := *o.conf.Load()
	if conf[d] {
		return
	}
	fresh, _ := o.learned.Learn(d, o.now())
	if fresh && len(conf) > 0 {
		o.log.Warn("domains: the backend accepted a recipient at a domain that is not in domains; moat takes it for ours from now on (a listed host writing there is not taken for a relay attempt): add it to domains if it is yours",
			"domain", d, "client", client.String())
	}
}
