package traps

import (
	"sync"
	"time"

	"moat/internal/store"
)

// Domains is a bounded set of mail domains learnt from the backend's own
// answers during hand-offs. It lives in the store too (one record kind, a
// TTL), so that it outlasts a restart and every MX on Redis shares it; a
// domain seen again is written at most once a day.
type Domains struct {
	st   store.Store
	kind string
	ttl  time.Duration
	max  int

	mu   sync.Mutex
	seen map[string]time.Time // when each was last written; zero: loaded
	full bool                 // the cap refused a domain already
}

// NewDomains loads the set kept under kind. The set is returned also with
// an error (a store not reachable yet): it fills again as domains are seen.
func NewDomains(st store.Store, kind string, ttl time.Duration, max int) (*Domains, error) {
	d := &Domains{st: st, kind: kind, ttl: ttl, max: max, seen: map[string]time.Time{}}
	err := st.Scan(kind, func(k string, _ []byte) bool {
		d.seen[k] = time.Time{} // written again at the next sight
		return len(d.seen) < max
	})
	return d, err
}

// Has reports whether domain was learnt.
func (d *Domains) Has(domain string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.seen[domain]
	return ok
}

// Len is how many domains were learnt.
func (d *Domains) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}

// Learn records that the backend takes mail for domain, seen at now. fresh
// says it was not known before; capped says, once, that the set is at its
// cap and domain could not be added.
func (d *Domains) Learn(domain string, now time.Time) (fresh, capped bool) {
	d.mu.Lock()
	last, ok := d.seen[domain]
	switch {
	case ok && now.Sub(last) < 24*time.Hour:
		d.mu.Unlock()
		return false, false
	case !ok && len(d.seen) >= d.max:
		capped, d.full = !d.full, true
		d.mu.Unlock()
		return false, capped
	}
	d.seen[domain] = now
	d.mu.Unlock()
	_ = d.st.Put(d.kind, domain, nil, now.Add(d.ttl))
	return !ok, false
}
