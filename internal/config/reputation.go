package config

import (
	"fmt"
	"strings"
	"time"

	"moat/internal/reputation"
)

// Reputation is the [reputation] table: evidence from DNS lists, network
// escalation, imported network lists, SPF-aware pools and the real mail
// server's filters. See docs/reputation.md.
type Reputation struct {
	DNSBL               []string // postscreen syntax: "zone=filter*weight"
	DNSBLThreshold      int
	DNSBLAllowThreshold int
	DNSBLAllowTTL       time.Duration
	DNSBLTimeout        time.Duration
	DNSServers          []string // host:port; empty: the name servers of /etc/resolv.conf

	NetThreshold int // 0: off
	NetWindow    time.Duration
	NetTTL       time.Duration
	NetPrefixV4  int
	NetPrefixV6  int
	ASNDB        string
	ASNThreshold int // 0: off
	DropLists    []string

	KarmaSpamWeight float64
	KarmaHamWeight  float64
	KarmaHalfLife   time.Duration
	KarmaGreyBelow  float64
	KarmaBlackBelow float64

	SPFPools bool
	Follow   []Follow
}

// Follow is one log file whose filter verdicts moat reads.
type Follow struct {
	File   string
	Format string // rspamd, spamassassin or postfix
}

// Sites parses the dnsbl list (validate has already checked it).
func (r Reputation) Sites() []reputation.Site {
	var out []reputation.Site
	for _, s := range r.DNSBL {
		site, err := reputation.ParseSite(s)
		if err == nil {
			out = append(out, site)
		}
	}
	return out
}

func defaultReputation() Reputation {
	k := reputation.DefaultKarma()
	return Reputation{
		DNSBLThreshold:      3,
		DNSBLAllowThreshold: -1,
		DNSBLAllowTTL:       time.Hour,
		DNSBLTimeout:        2 * time.Second,
		NetWindow:           time.Hour,
		NetTTL:              24 * time.Hour,
		NetPrefixV4:         24,
		NetPrefixV6:         48,
		KarmaSpamWeight:     k.SpamWeight,
		KarmaHamWeight:      k.HamWeight,
		KarmaHalfLife:       k.HalfLife,
		KarmaGreyBelow:      k.GreyBelow,
		KarmaBlackBelow:     k.BlackBelow,
		SPFPools:            true,
	}
}

type reputationFile struct {
	DNSBL               *[]string `toml:"dnsbl"`
	DNSBLThreshold      *int      `toml:"dnsbl_threshold"`
	DNSBLAllowThreshold *int      `toml:"dnsbl_allow_threshold"`
	DNSBLAllowTTL       *string   `toml:"dnsbl_allow_ttl"`
	DNSBLTimeout        *string   `toml:"dnsbl_timeout"`
	DNSServers          *[]string `toml:"dns_servers"`
	NetThreshold        *int      `toml:"net_threshold"`
	NetWindow           *string   `toml:"net_window"`
	NetTTL              *string   `toml:"net_ttl"`
	NetPrefixV4         *int      `toml:"net_prefix_v4"`
	NetPrefixV6         *int      `toml:"net_prefix_v6"`
	ASNDB               *string   `toml:"asn_db"`
	ASNThreshold        *int      `toml:"asn_threshold"`
	DropLists           *[]string `toml:"drop_lists"`
	KarmaSpamWeight     *float64  `toml:"karma_spam_weight"`
	KarmaHamWeight      *float64  `toml:"karma_ham_weight"`
	KarmaHalfLife       *string   `toml:"karma_half_life"`
	KarmaGreyBelow      *float64  `toml:"karma_grey_below"`
	KarmaBlackBelow     *float64  `toml:"karma_black_below"`
	SPFPools            *bool     `toml:"spf_pools"`
	Follow              *[]struct {
		File   *string `toml:"file"`
		Format *string `toml:"format"`
	} `toml:"follow"`
}

func (p *parser) reputation(c *Reputation, f *reputationFile) {
	if f == nil {
		return
	}
	p.strs(&c.DNSBL, f.DNSBL)
	p.int(&c.DNSBLThreshold, f.DNSBLThreshold)
	p.int(&c.DNSBLAllowThreshold, f.DNSBLAllowThreshold)
	p.dur(&c.DNSBLAllowTTL, "reputation.dnsbl_allow_ttl", f.DNSBLAllowTTL)
	p.dur(&c.DNSBLTimeout, "reputation.dnsbl_timeout", f.DNSBLTimeout)
	p.strs(&c.DNSServers, f.DNSServers)
	p.int(&c.NetThreshold, f.NetThreshold)
	p.dur(&c.NetWindow, "reputation.net_window", f.NetWindow)
	p.dur(&c.NetTTL, "reputation.net_ttl", f.NetTTL)
	p.int(&c.NetPrefixV4, f.NetPrefixV4)
	p.int(&c.NetPrefixV6, f.NetPrefixV6)
	p.str(&c.ASNDB, f.ASNDB)
	p.int(&c.ASNThreshold, f.ASNThreshold)
	p.strs(&c.DropLists, f.DropLists)
	for _, kv := range []struct {
		dst *float64
		v   *float64
	}{
		{&c.KarmaSpamWeight, f.KarmaSpamWeight}, {&c.KarmaHamWeight, f.KarmaHamWeight},
		{&c.KarmaGreyBelow, f.KarmaGreyBelow}, {&c.KarmaBlackBelow, f.KarmaBlackBelow},
	} {
		if kv.v != nil {
			*kv.dst = *kv.v
		}
	}
	p.dur(&c.KarmaHalfLife, "reputation.karma_half_life", f.KarmaHalfLife)
	if f.SPFPools != nil {
		c.SPFPools = *f.SPFPools
	}
	if f.Follow != nil {
		c.Follow = nil
		for _, fl := range *f.Follow {
			var x Follow
			p.str(&x.File, fl.File)
			p.str(&x.Format, fl.Format)
			c.Follow = append(c.Follow, x)
		}
	}
}

func (r Reputation) validate() error {
	for i, s := range r.DNSBL {
		if _, err := reputation.ParseSite(s); err != nil {
			return fmt.Errorf("config: reputation.dnsbl[%d]: %v", i, err)
		}
	}
	if r.DNSBLThreshold < 1 {
		return fmt.Errorf("config: reputation.dnsbl_threshold: %d: must be at least 1 (default 3)", r.DNSBLThreshold)
	}
	if r.DNSBLAllowThreshold > 0 {
		return fmt.Errorf("config: reputation.dnsbl_allow_threshold: %d: must be 0 or negative (default -1): only allow lists (negative weights) may whitelist", r.DNSBLAllowThreshold)
	}
	if r.DNSBLTimeout <= 0 || r.DNSBLTimeout > 30*time.Second {
		return fmt.Errorf("config: reputation.dnsbl_timeout: %s: want between \"1ms\" and \"30s\" (default \"2s\")", r.DNSBLTimeout)
	}
	if r.DNSBLAllowTTL <= 0 {
		return fmt.Errorf("config: reputation.dnsbl_allow_ttl: must be positive (default \"1h\")")
	}
	for i, s := range r.DNSServers {
		if !strings.Contains(s, ":") || strings.ContainsAny(s, " \t/") {
			return fmt.Errorf("config: reputation.dns_servers[%d]: %q: want host:port, e.g. \"127.0.0.1:53\" or \"[::1]:53\"", i, s)
		}
	}
	if r.NetThreshold < 0 || r.ASNThreshold < 0 {
		return fmt.Errorf("config: reputation.net_threshold and asn_threshold: must be 0 (off) or positive")
	}
	if r.NetThreshold == 1 || r.ASNThreshold == 1 {
		return fmt.Errorf("config: reputation.net_threshold/asn_threshold: 1 would make a whole network black for one host; use at least 2 (or 0 for off)")
	}
	if r.NetWindow <= 0 || r.NetTTL <= 0 {
		return fmt.Errorf("config: reputation.net_window and net_ttl must be positive (defaults \"1h\" and \"24h\")")
	}
	if r.NetPrefixV4 < 8 || r.NetPrefixV4 > 32 {
		return fmt.Errorf("config: reputation.net_prefix_v4: %d: want 8..32 (default 24)", r.NetPrefixV4)
	}
	if r.NetPrefixV6 < 16 || r.NetPrefixV6 > 128 {
		return fmt.Errorf("config: reputation.net_prefix_v6: %d: want 16..128 (default 48)", r.NetPrefixV6)
	}
	if r.ASNThreshold > 0 && r.ASNDB == "" {
		return fmt.Errorf("config: reputation.asn_threshold needs reputation.asn_db, an ip2asn TSV file")
	}
	if r.KarmaSpamWeight <= 0 || r.KarmaHamWeight < 0 {
		return fmt.Errorf("config: reputation.karma_spam_weight must be positive and karma_ham_weight not negative (defaults 1 and 0.25)")
	}
	if r.KarmaHalfLife <= 0 {
		return fmt.Errorf("config: reputation.karma_half_life must be positive (default \"7d\")")
	}
	if r.KarmaBlackBelow >= r.KarmaGreyBelow {
		return fmt.Errorf("config: reputation.karma_black_below (%g) must be below karma_grey_below (%g) (defaults -1.5 and 0)", r.KarmaBlackBelow, r.KarmaGreyBelow)
	}
	for i, f := range r.Follow {
		if f.File == "" {
			return fmt.Errorf("config: reputation.follow[%d].file: want a log file, e.g. \"/var/log/rspamd/rspamd.log\"", i)
		}
		switch f.Format {
		case reputation.FormatRspamd, reputation.FormatSpamAssassin, reputation.FormatPostfix:
		default:
			return fmt.Errorf("config: reputation.follow[%d].format: %q: want \"rspamd\", \"spamassassin\" or \"postfix\"", i, f.Format)
		}
	}
	return nil
}
