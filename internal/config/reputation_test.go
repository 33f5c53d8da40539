package config

import (
	"slices"
	"strings"
	"testing"
	"time"

	"moat/internal/reputation"
)

func TestReputationKeys(t *testing.T) {
	c, err := Parse([]byte(`
[reputation]
dnsbl = ["zen.example.net=127.0.0.[2..11]*3", "list.dnswl.example=127.0.[0..255].[1..3]*-5"]
dnsbl_threshold = 4
dnsbl_allow_threshold = -2
dnsbl_allow_ttl = "30m"
dnsbl_timeout = "1s"
dns_servers = ["127.0.0.1:5353", "[::1]:53"]
net_threshold = 5
net_window = "2h"
net_ttl = "2d"
net_prefix_v4 = 22
net_prefix_v6 = 40
asn_db = "/var/lib/moat/ip2asn.tsv"
asn_threshold = 20
drop_lists = ["/var/lib/moat/drop.txt"]
karma_spam_weight = 2
karma_ham_weight = 0.5
karma_half_life = "3d"
karma_grey_below = -0.5
karma_black_below = -3
spf_pools = false
follow = [{ file = "/var/log/rspamd/rspamd.log", format = "rspamd" }, { file = "/var/log/mail.log", format = "postfix" }]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Reputation
	if len(r.DNSBL) != 2 || r.DNSBL[1].Weight != -5 || r.DNSBLThreshold != 4 || r.DNSBLAllowThreshold != -2 ||
		r.DNSBLAllowTTL.Duration != 30*time.Minute || r.DNSBLTimeout.Duration != time.Second || len(r.DNSServers) != 2 ||
		r.NetThreshold != 5 || r.NetWindow.Duration != 2*time.Hour || r.NetTTL.Duration != 48*time.Hour || r.NetPrefixV4 != 22 ||
		r.NetPrefixV6 != 40 || r.ASNDB == "" || r.ASNThreshold != 20 || len(r.DropLists) != 1 ||
		r.KarmaSpamWeight != 2 || r.KarmaHamWeight != 0.5 || r.KarmaHalfLife.Duration != 72*time.Hour ||
		r.KarmaGreyBelow != -0.5 || r.KarmaBlackBelow != -3 || r.SPFPools || len(r.Follow) != 2 || r.Follow[1].Format != "postfix" {
		t.Errorf("parsed %+v", r)
	}
	d := Default().Reputation
	if !d.SPFPools || d.DNSBLThreshold != 3 || d.DNSBLAllowThreshold != -1 || d.NetThreshold != 0 || d.KarmaBlackBelow != -1.5 {
		t.Errorf("defaults %+v", d)
	}
}

func TestReputationErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ text, key string }{
		{`dnsbl = ["zen.example.net=127.0.0"]`, "reputation.dnsbl[0]"},
		{`dnsbl = ["zen.example.net*x"]`, "reputation.dnsbl[0]"},
		{`dnsbl_threshold = 0`, "reputation.dnsbl_threshold"},
		{`dnsbl_allow_threshold = 2`, "reputation.dnsbl_allow_threshold"},
		{`dnsbl_timeout = "1m"`, "reputation.dnsbl_timeout"},
		{`dnsbl_timeout = "soon"`, "reputation.dnsbl_timeout"},
		{`dns_servers = ["127.0.0.1"]`, "reputation.dns_servers[0]"},
		{`net_threshold = 1`, "reputation.net_threshold"},
		{`net_prefix_v4 = 33`, "reputation.net_prefix_v4"},
		{`net_prefix_v6 = 8`, "reputation.net_prefix_v6"},
		{`asn_threshold = 10`, "reputation.asn_threshold"},
		{`karma_spam_weight = 0`, "reputation.karma_spam_weight"},
		{`karma_half_life = "0s"`, "reputation.karma_half_life"},
		{`karma_black_below = 1`, "reputation.karma_black_below"},
		{`follow = [{ file = "x.log", format = "exim" }]`, "reputation.follow[0].format"},
		{`follow = [{ format = "rspamd" }]`, "reputation.follow[0].file"},
		{`unknown_key = 1`, "reputation.unknown_key"},
		{`karma_spam_weight = nan`, "reputation.karma_spam_weight"},
		{`karma_ham_weight = inf`, "reputation.karma_ham_weight"},
		{`karma_grey_below = nan`, "reputation.karma_grey_below"},
		{`karma_black_below = -inf`, "reputation.karma_black_below"},
		{`dnsbl = ["zen.example.net", 3]`, "reputation.dnsbl[1]"},
		{`net_window = "0s"`, "reputation.net_window"},
		{`dnsbl_allow_ttl = "-1h"`, "reputation.dnsbl_allow_ttl"},
	} {
		_, err := Parse([]byte("[reputation]\n" + tc.text + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: error %v, want one naming %s", tc.text, err, tc.key)
		}
	}
}

// TestDefaultKarmaIsReputations: config writes the karma defaults out so
// that it imports nothing; they must stay reputation's.
func TestDefaultKarmaIsReputations(t *testing.T) {
	k, r := reputation.DefaultKarma(), Default().Reputation
	got := reputation.KarmaPolicy{SpamWeight: r.KarmaSpamWeight, HamWeight: r.KarmaHamWeight,
		HalfLife: r.KarmaHalfLife.Duration, GreyBelow: r.KarmaGreyBelow, BlackBelow: r.KarmaBlackBelow}
	if got != k {
		t.Errorf("config's karma defaults %+v, reputation.DefaultKarma %+v", got, k)
	}
}

// TestFollowFormatsAreReputations: every format config accepts is one
// reputation reads, and the other way round.
func TestFollowFormatsAreReputations(t *testing.T) {
	want := []string{reputation.FormatRspamd, reputation.FormatSpamAssassin, reputation.FormatPostfix}
	if !slices.Equal(followFormats, want) {
		t.Errorf("config accepts formats %q, reputation reads %q", followFormats, want)
	}
}
