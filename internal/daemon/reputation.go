package daemon

import (
	"fmt"
	"log/slog"
	"time"

	"moat/internal/classify"
	"moat/internal/config"
	"moat/internal/greylist"
	"moat/internal/reputation"
)

// dropReload is how often the imported network lists are read again (a
// reload reads them at once).
const dropReload = 10 * time.Minute

// buildReputation is what the [reputation] table asks for beyond the
// policy NewEngine set: DNS lists, SPF pools, network lists and the AS
// table, loaded from their files. The caller gives it to the engine
// (SetReputation).
func buildReputation(cfg *config.Config, log *slog.Logger) (classify.Reputation, error) {
	rc := cfg.Reputation
	rep := reputationPolicy(cfg)
	rep.Log = log
	servers := rc.DNSServers
	if len(servers) == 0 && (len(rc.DNSBL) > 0 || rc.SPFPools) {
		var err error
		servers, err = reputation.ResolvConf("/etc/resolv.conf")
		if err != nil || len(servers) == 0 {
			log.Warn("reputation: no name servers in /etc/resolv.conf and none in reputation.dns_servers: DNS lists and SPF pools are off")
		}
	}
	if len(rc.DNSBL) > 0 && len(servers) > 0 {
		bl, err := reputation.NewDNSBL(reputation.DNSBLConfig{Sites: rc.DNSBL, Servers: servers, Timeout: rc.DNSBLTimeout.Duration, Log: log})
		if err != nil {
			return rep, fmt.Errorf("config: reputation.dnsbl: %w", err)
		}
		rep.DNSBL = bl
	}
	if rc.SPFPools && len(servers) > 0 {
		rep.Pools = greylist.NewPools(greylist.PoolsConfig{Servers: servers, Timeout: rc.DNSBLTimeout.Duration})
	}
	if len(rc.DropLists) > 0 {
		drop, err := reputation.LoadDrop(rc.DropLists...)
		if err != nil {
			return rep, fmt.Errorf("config: reputation.drop_lists: %w", err)
		}
		rep.Drop = drop
	}
	if rc.ASNDB != "" {
		t, err := reputation.LoadASN(rc.ASNDB)
		if err != nil {
			return rep, fmt.Errorf("config: reputation.asn_db: %w", err)
		}
		rep.ASN = t
	}
	log.Info("reputation", "dnsbl_sites", len(rc.DNSBL), "dns_servers", len(servers), "spf_pools", rep.Pools != nil,
		"drop_networks", rep.Drop.Len(), "asn_ranges", rep.ASN.Len(), "net_threshold", rc.NetThreshold, "follow", len(rc.Follow))
	return rep, nil
}
