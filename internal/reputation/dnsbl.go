package reputation

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"moat/internal/dnsbl"
)

// Site is one entry of the DNSBL list (see package dnsbl).
type Site = dnsbl.Site

// ParseSite parses one "zone=filter*weight" entry (see dnsbl.ParseSite).
func ParseSite(s string) (Site, error) { return dnsbl.ParseSite(s) }

// Hit is one site entry that a host is listed in.
type Hit struct {
	Zone   string
	Reply  netip.Addr
	Weight int
}

// Score is what the lists say of one host.
type Score struct {
	Total  int
	Hits   []Hit
	Failed []string // zones that did not answer in time; they count 0
}

// String lists the hits for a reason: "zen.example=127.0.0.4(+3) wl.example=127.0.10.2(-5)".
func (s Score) String() string {
	var parts []string
	for _, h := range s.Hits {
		parts = append(parts, fmt.Sprintf("%s=%s(%+d)", h.Zone, h.Reply, h.Weight))
	}
	if len(parts) == 0 {
		return "not listed"
	}
	return strings.Join(parts, " ")
}

// DNSBLConfig configures the DNSBL client.
type DNSBLConfig struct {
	Sites     []Site
	Servers   []string      // host:port of recursive resolvers, tried in order
	Timeout   time.Duration // for the whole lookup of one host; default 2s
	CacheSize int           // answers kept; default 100000
	Log       *slog.Logger
}

// DNSBL looks client addresses up in DNS block and allow lists. It is safe
// for concurrent use.
type DNSBL struct {
	cfg    DNSBLConfig
	zones  []string // distinct zones, each queried once per host
	client *dns.Client
	now    func() time.Time

	mu      sync.Mutex
	cache   map[string]cached
	lastLog map[string]time.Time // zone → last failure logged
}

type cached struct {
	replies []netip.Addr // nil: not listed
	expires time.Time
}

// Answers are kept at least this long (a TTL of 0 would mean a query per
// connection) and at most this long (a listing should not outlive its
// removal by much).
const (
	minCacheTTL  = 10 * time.Second
	maxCacheTTL  = time.Hour
	negCacheTTL  = 5 * time.Minute // NXDOMAIN without an SOA
	logFailEvery = time.Minute
)

// NewDNSBL returns a DNSBL client over the configured resolvers.
func NewDNSBL(cfg DNSBLConfig) (*DNSBL, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("reputation: dnsbl: no DNS servers")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 100000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &DNSBL{cfg: cfg, client: &dns.Client{Net: "udp", Timeout: cfg.Timeout}, now: time.Now,
		cache: map[string]cached{}, lastLog: map[string]time.Time{}}
	seen := map[string]bool{}
	for _, s := range cfg.Sites {
		if !seen[s.Zone] {
			seen[s.Zone] = true
			d.zones = append(d.zones, s.Zone)
		}
	}
	return d, nil
}

// Sites returns the configured list.
func (d *DNSBL) Sites() []Site { return d.cfg.Sites }

// Timeout is the bound on one Score call.
func (d *DNSBL) Timeout() time.Duration { return d.cfg.Timeout }

// Score looks addr up in every zone at once and adds the weights of the
// site entries whose filter matches a reply. It returns within the
// configured timeout; a zone that fails or is too slow counts 0 and is
// logged at most once a minute.
func (d *DNSBL) Score(ctx context.Context, addr netip.Addr) Score {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	addr = addr.Unmap()
	type answer struct {
		zone    string
		replies []netip.Addr
		err     error
	}
	ch := make(chan answer, len(d.zones))
	for _, z := range d.zones {
		go func() {
			r, err := d.query(ctx, reverseName(addr)+z+".")
			ch <- answer{z, r, err}
		}()
	}
	replies := map[string][]netip.Addr{}
	var sc Score
	for range d.zones {
		a := <-ch
		if a.err != nil {
			sc.Failed = append(sc.Failed, a.zone)
			d.logFailure(a.zone, a.err)
			continue
		}
		replies[a.zone] = a.replies
	}
	sort.Strings(sc.Failed)
	for _, s := range d.cfg.Sites {
		for _, r := range replies[s.Zone] {
			if s.Match(r) {
				sc.Total += s.Weight
				sc.Hits = append(sc.Hits, Hit{Zone: s.Zone, Reply: r, Weight: s.Weight})
				break // an entry counts once, as in postscreen
			}
		}
	}
	return sc
}

func (d *DNSBL) logFailure(zone string, err error) {
	now := d.now()
	d.mu.Lock()
	last, ok := d.lastLog[zone]
	if ok && now.Sub(last) < logFailEvery {
		d.mu.Unlock()
		return
	}
	d.lastLog[zone] = now
	d.mu.Unlock()
	d.cfg.Log.Warn("dnsbl: zone does not answer; it counts 0 until it does", "zone", zone, "err", err.Error())
}

// query returns the A records of name (nil for NXDOMAIN or no records),
// from the cache when it can.
func (d *DNSBL) query(ctx context.Context, name string) ([]netip.Addr, error) {
	now := d.now()
	d.mu.Lock()
	if c, ok := d.cache[name]; ok && now.Before(c.expires) {
		d.mu.Unlock()
		return c.replies, nil
	}
	d.mu.Unlock()

	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.RecursionDesired = true
	var lastErr error
	for _, srv := range d.cfg.Servers {
		in, _, err := d.client.ExchangeContext(ctx, m, srv)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		var replies []netip.Addr
		var ttl time.Duration
		switch in.Rcode {
		case dns.RcodeSuccess:
			ttl = maxCacheTTL
			for _, rr := range in.Answer {
				if a, ok := rr.(*dns.A); ok {
					if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
						replies = append(replies, ip)
					}
					ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
				}
			}
			if len(replies) == 0 {
				ttl = negTTL(in)
			}
		case dns.RcodeNameError:
			ttl = negTTL(in)
		default:
			lastErr = fmt.Errorf("%s: %s", srv, dns.RcodeToString[in.Rcode])
			continue
		}
		d.put(name, cached{replies: replies, expires: now.Add(max(ttl, minCacheTTL))})
		return replies, nil
	}
	return nil, lastErr
}

// negTTL is how long a "not listed" answer is kept: the SOA minimum of
// the authority section (RFC 2308), else five minutes.
func negTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(time.Duration(min(soa.Minttl, soa.Hdr.Ttl))*time.Second, maxCacheTTL)
		}
	}
	return negCacheTTL
}

// put caches an answer. The cache is bounded: when it is full, expired
// answers go first and then an arbitrary tenth, so a flood of new hosts
// costs lookups but never unbounded memory.
func (d *DNSBL) put(name string, c cached) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.cache) >= d.cfg.CacheSize {
		now := d.now()
		for k, v := range d.cache {
			if !now.Before(v.expires) {
				delete(d.cache, k)
			}
		}
		drop := len(d.cache) - d.cfg.CacheSize*9/10
		for k := range d.cache {
			if drop <= 0 {
				break
			}
			delete(d.cache, k)
			drop--
		}
	}
	d.cache[name] = c
}

// reverseName is the DNSBL query prefix for addr, with a trailing dot:
// "4.3.2.1." for 1.2.3.4, nibbles in reverse for IPv6.
func reverseName(addr netip.Addr) string {
	var b strings.Builder
	if addr.Is4() {
		a := addr.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
		return b.String()
	}
	a := addr.As16()
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[a[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[a[i]>>4])
		b.WriteByte('.')
	}
	return b.String()
}

// ResolvConf returns the name servers of a resolv.conf file as host:port.
func ResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseResolvConf(f)
}

// ParseResolvConf reads "nameserver ADDR" lines.
func ParseResolvConf(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			host := f[1]
			if i := strings.IndexByte(host, '%'); i >= 0 {
				host = host[:i] // zone of a link-local resolver
			}
			if _, err := netip.ParseAddr(host); err == nil {
				out = append(out, net.JoinHostPort(host, "53"))
			}
		}
	}
	return out, sc.Err()
}
