package config

import (
	"math"
	"slices"
	"strings"
	"time"

	"moat/internal/dnsbl"
)

// Reputation is the [reputation] table: evidence from DNS lists, network
// escalation, imported network lists, SPF-aware pools and the real mail
// server's filters. See docs/reputation.md.
type Reputation struct {
	DNSBL               []dnsbl.Site `toml:"dnsbl"` // postscreen syntax: "zone=filter*weight"
	DNSBLThreshold      int          `toml:"dnsbl_threshold"`
	DNSBLAllowThreshold int          `toml:"dnsbl_allow_threshold"`
	DNSBLAllowTTL       Duration     `toml:"dnsbl_allow_ttl"`
	DNSBLTimeout        Duration     `toml:"dnsbl_timeout"`
	DNSServers          []string     `toml:"dns_servers"` // host:port; empty: the name servers of /etc/resolv.conf

	NetThreshold int      `toml:"net_threshold"` // 0: off
	NetWindow    Duration `toml:"net_window"`
	NetTTL       Duration `toml:"net_ttl"`
	NetPrefixV4  int      `toml:"net_prefix_v4"`
	NetPrefixV6  int      `toml:"net_prefix_v6"`
	ASNDB        string   `toml:"asn_db"`
	ASNThreshold int      `toml:"asn_threshold"` // 0: off
	DropLists    []string `toml:"drop_lists"`

	KarmaSpamWeight float64  `toml:"karma_spam_weight"`
	KarmaHamWeight  float64  `toml:"karma_ham_weight"`
	KarmaHalfLife   Duration `toml:"karma_half_life"`
	KarmaGreyBelow  float64  `toml:"karma_grey_below"`
	KarmaBlackBelow float64  `toml:"karma_black_below"`

	SPFPools bool     `toml:"spf_pools"`
	Follow   []Follow `toml:"follow"`
}

// Follow is one log file whose filter verdicts moat reads.
type Follow struct {
	File   string `toml:"file"`
	Format string `toml:"format"` // one of followFormats
}

// followFormats are the log formats reputation reads verdicts from (its
// Format constants; a test holds the two lists together).
var followFormats = []string{"rspamd", "spamassassin", "postfix"}

// defaultReputation leaves DNS lists and escalation off. The karma policy
// is reputation.DefaultKarma, written out here so that config imports
// nothing (a test holds the two together): the first spam verdict costs a
// white host its whitelisting, a second within days makes it black.
func defaultReputation() Reputation {
	return Reputation{
		DNSBLThreshold:      3,
		DNSBLAllowThreshold: -1,
		DNSBLAllowTTL:       Duration{time.Hour},
		DNSBLTimeout:        Duration{2 * time.Second},
		NetWindow:           Duration{time.Hour},
		NetTTL:              Duration{24 * time.Hour},
		NetPrefixV4:         24,
		NetPrefixV6:         48,
		KarmaSpamWeight:     1,
		KarmaHamWeight:      0.25,
		KarmaHalfLife:       Duration{7 * 24 * time.Hour},
		KarmaGreyBelow:      0,
		KarmaBlackBelow:     -1.5,
		SPFPools:            true,
	}
}

func (r Reputation) validate(p *problems) {
	if r.DNSBLThreshold < 1 {
		p.add("config: reputation.dnsbl_threshold: %d: must be at least 1 (default 3)", r.DNSBLThreshold)
	}
	if r.DNSBLAllowThreshold > 0 {
		p.add("config: reputation.dnsbl_allow_threshold: %d: must be 0 or negative (default -1): only allow lists (negative weights) may whitelist", r.DNSBLAllowThreshold)
	}
	if r.DNSBLTimeout.Duration <= 0 || r.DNSBLTimeout.Duration > 30*time.Second {
		p.add("config: reputation.dnsbl_timeout: %s: want between \"1ms\" and \"30s\" (default \"2s\")", r.DNSBLTimeout)
	}
	if r.DNSBLAllowTTL.Duration <= 0 {
		p.add("config: reputation.dnsbl_allow_ttl: must be positive (default \"1h\")")
	}
	for i, s := range r.DNSServers {
		if !strings.Contains(s, ":") || strings.ContainsAny(s, " \t/") {
			p.add("config: reputation.dns_servers[%d]: %q: want host:port, e.g. \"127.0.0.1:53\" or \"[::1]:53\"", i, s)
		}
	}
	if r.NetThreshold < 0 || r.ASNThreshold < 0 {
		p.add("config: reputation.net_threshold and asn_threshold: must be 0 (off) or positive")
	}
	if r.NetThreshold == 1 || r.ASNThreshold == 1 {
		p.add("config: reputation.net_threshold/asn_threshold: 1 would make a whole network black for one host; use at least 2 (or 0 for off)")
	}
	if r.NetWindow.Duration <= 0 || r.NetTTL.Duration <= 0 {
		p.add("config: reputation.net_window and net_ttl must be positive (defaults \"1h\" and \"24h\")")
	}
	if r.NetPrefixV4 < 8 || r.NetPrefixV4 > 32 {
		p.add("config: reputation.net_prefix_v4: %d: want 8..32 (default 24)", r.NetPrefixV4)
	}
	if r.NetPrefixV6 < 16 || r.NetPrefixV6 > 128 {
		p.add("config: reputation.net_prefix_v6: %d: want 16..128 (default 48)", r.NetPrefixV6)
	}
	if r.ASNThreshold > 0 && r.ASNDB == "" {
		p.add("config: reputation.asn_threshold needs reputation.asn_db, an ip2asn TSV or an MMDB file such as GeoLite2-ASN")
	}
	for _, kv := range []struct {
		key string
		v   float64
	}{
		{"karma_spam_weight", r.KarmaSpamWeight}, {"karma_ham_weight", r.KarmaHamWeight},
		{"karma_grey_below", r.KarmaGreyBelow}, {"karma_black_below", r.KarmaBlackBelow},
	} {
		// TOML can spell nan and inf; no comparison below would refuse them.
		if math.IsNaN(kv.v) || math.IsInf(kv.v, 0) {
			p.add("config: reputation.%s: %g: want a finite number", kv.key, kv.v)
		}
	}
	if r.KarmaSpamWeight <= 0 || r.KarmaHamWeight < 0 {
		p.add("config: reputation.karma_spam_weight must be positive and karma_ham_weight not negative (defaults 1 and 0.25)")
	}
	if r.KarmaHalfLife.Duration <= 0 {
		p.add("config: reputation.karma_half_life must be positive (default \"7d\")")
	}
	if r.KarmaBlackBelow >= r.KarmaGreyBelow {
		p.add("config: reputation.karma_black_below (%g) must be below karma_grey_below (%g) (defaults -1.5 and 0)", r.KarmaBlackBelow, r.KarmaGreyBelow)
	}
	for i, f := range r.Follow {
		if f.File == "" {
			p.add("config: reputation.follow[%d].file: want a log file, e.g. \"/var/log/rspamd/rspamd.log\"", i)
		}
		if !slices.Contains(followFormats, f.Format) {
			p.add("config: reputation.follow[%d].format: %q: want \"rspamd\", \"spamassassin\" or \"postfix\"", i, f.Format)
		}
	}
}
