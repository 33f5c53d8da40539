package greylist

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"

	"moat/internal/clock"
	"moat/internal/store"
)

// Pools lets a retry from another address of a big sender's pool count
// for a triplet. Gmail, Outlook and the large senders retry a deferred
// message from whichever address of their pool is free, often in another
// /24, so folding the client to its network is not enough. When the
// sender domain's SPF record authorises the client (result "pass"), the
// triplet is keyed by the sender's whole pool instead of the client's
// network: any retry from an address that SPF also authorises for the same
// envelope sender matches it.
//
// Forged senders gain nothing: SPF must pass for the address that retries.
// A domain whose SPF record authorises everybody ("+all", 0.0.0.0/0) would
// let a botnet share one triplet, so a record that also passes for a
// documentation address (192.0.2.1, 2001:db8::1), which no real pool holds,
// gives no pool. Lookups are bounded by a timeout and by the SPF library's
// limits (10 DNS mechanisms, 2 void lookups, RFC 7208 4.6.4), and results
// are cached for a while, so a session costs at most one SPF evaluation.
type Pools struct {
	resolver spf.DNSResolver
	timeout  time.Duration
	ttl      time.Duration
	max      int
	clock    clock.Clock

	mu    sync.Mutex
	cache map[poolKey]poolResult

	askReserved bool
}

type poolKey struct {
	client netip.Addr // the documentation address for the wide-open probe
	domain string
}

type poolResult struct {
	pass    bool
	expires time.Time
}

// PoolsConfig configures SPF-aware pools.
type PoolsConfig struct {
	Servers  []string      // host:port of the resolvers SPF lookups go to
	Timeout  time.Duration // one SPF evaluation; default 2s
	CacheTTL time.Duration // how long a result is kept; default 10m
	MaxCache int           // results kept; default 100000
	Clock    clock.Clock   // default clock.Real
	// Resolver overrides Servers (tests).
	Resolver spf.DNSResolver
	// AskReserved lets tests on loopback, and simulations whose
	// Resolver answers from memory, use reserved names (.test,
	// .example); moat itself never asks about them.
	AskReserved bool
}

// NewPools returns Pools that ask the configured resolvers.
func NewPools(cfg PoolsConfig) *Pools {
	p := &Pools{resolver: cfg.Resolver, timeout: cfg.Timeout, ttl: cfg.CacheTTL, max: cfg.MaxCache, askReserved: cfg.AskReserved,
		clock: cfg.Clock, cache: map[poolKey]poolResult{}}
	if p.timeout <= 0 {
		p.timeout = 2 * time.Second
	}
	if p.ttl <= 0 {
		p.ttl = 10 * time.Minute
	}
	if p.max <= 0 {
		p.max = 100000
	}
	if p.clock == nil {
		p.clock = clock.Real{}
	}
	if p.resolver == nil {
		p.resolver = Resolver(cfg.Servers)
	}
	return p
}

// Resolver returns a stub resolver that sends every query to the given
// servers (host:port), whatever the system's configuration says.
func Resolver(servers []string) *net.Resolver {
	var mu sync.Mutex
	next := 0
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		mu.Lock()
		srv := servers[next%len(servers)]
		next++
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, srv)
	}}
}

// Authorised reports whether the SPF record of sender's domain passes for
// client, and is not so wide that it passes for anybody.
func (p *Pools) Authorised(client netip.Addr, sender string) bool {
	at := strings.LastIndexByte(sender, '@')
	if at < 0 || at == len(sender)-1 {
		return false
	}
	domain := strings.ToLower(sender[at+1:])
	if reserved(domain) && !p.askReserved {
		return false
	}
	client = client.Unmap()
	if pass, ok := p.pass(client, domain, sender); !pass || !ok {
		return false
	}
	probe := netip.MustParseAddr("192.0.2.1")
	if client.Is6() {
		probe = netip.MustParseAddr("2001:db8::1")
	}
	wide, ok := p.pass(probe, domain, sender)
	return ok && !wide
}

// pass evaluates SPF for client; ok is false when DNS failed (TempError).
func (p *Pools) pass(client netip.Addr, domain, sender string) (pass, ok bool) {
	k := poolKey{client, domain}
	now := p.clock.Now()
	p.mu.Lock()
	if r, ok := p.cache[k]; ok && now.Before(r.expires) {
		p.mu.Unlock()
		return r.pass, true
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	res, _ := spf.CheckHostWithSender(net.IP(client.AsSlice()), domain, sender,
		spf.WithContext(ctx), spf.WithResolver(p.resolver))
	if res == spf.TempError {
		return false, false // not cached: DNS may answer next time
	}
	pass = res == spf.Pass
	p.mu.Lock()
	if len(p.cache) >= p.max {
		for k, r := range p.cache {
			if !now.Before(r.expires) || len(p.cache) >= p.max {
				delete(p.cache, k)
			}
		}
	}
	p.cache[k] = poolResult{pass: pass, expires: now.Add(p.ttl)}
	p.mu.Unlock()
	return pass, true
}

// reserved reports names that can have no SPF record on the Internet:
// the special-use names of RFC 2606 and RFC 6761. moat never asks about
// them, so test set-ups that use them never send a query off the machine.
func reserved(domain string) bool {
	domain = strings.TrimSuffix(domain, ".")
	for _, tld := range []string{"test", "example", "invalid", "localhost", "local"} {
		if domain == tld || strings.HasSuffix(domain, "."+tld) {
			return true
		}
	}
	for _, d := range []string{"example.com", "example.net", "example.org"} {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

// AnyNet is the Net of a pool triplet: the sender's pool may be anywhere.
// Folding never produces it (prefixes are at least /8).
var AnyNet = netip.PrefixFrom(netip.IPv6Unspecified(), 0)

// PoolTriplet is the greylist key of an attempt whose client SPF
// authorises for sender.
func PoolTriplet(sender, rcpt string) store.Triplet {
	return store.Triplet{Net: AnyNet, Sender: NormalizeSender(sender), Rcpt: rcpt}
}

// CheckPool is Check with SPF-aware pools: when p authorises client for
// sender, the attempt is keyed by the sender's pool, else by the client's
// network. A nil p, or the null sender, is plain Check.
func (g *Greylist) CheckPool(p *Pools, client netip.Addr, sender, rcpt string) (Result, error) {
	t, pool := g.TripletPool(p, client, sender, rcpt)
	r, err := g.check(t)
	if pool {
		r.Reason = "SPF pool: " + r.Reason
	}
	return r, err
}

// TripletPool is the key CheckPool gives an attempt; pool says it is the
// sender's pool's rather than the client network's.
func (g *Greylist) TripletPool(p *Pools, client netip.Addr, sender, rcpt string) (t store.Triplet, pool bool) {
	if p == nil || sender == "" || !p.Authorised(client, sender) {
		return g.Triplet(client, sender, rcpt), false
	}
	return PoolTriplet(sender, rcpt), true
}
