package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"moat/internal/classify"
	"moat/internal/config"
	"moat/internal/greylist"
	"moat/internal/reputation"
)

// dropReload is how often the imported network lists are read again
// (SIGHUP reads them at once).
const dropReload = 10 * time.Minute

// loadReputation gives eng what the [reputation] table asks for beyond
// the policy NewEngine set: DNS lists, SPF pools, network lists and the AS
// table. It returns the network lists, for reloading; nil when there are
// none.
func loadReputation(cfg *config.Config, eng *classify.Engine, log *slog.Logger) (*reputation.DropList, error) {
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
			return nil, fmt.Errorf("config: reputation.dnsbl: %w", err)
		}
		rep.DNSBL = bl
	}
	if rc.SPFPools && len(servers) > 0 {
		rep.Pools = greylist.NewPools(greylist.PoolsConfig{Servers: servers, Timeout: rc.DNSBLTimeout.Duration})
	}
	if len(rc.DropLists) > 0 {
		drop, err := reputation.LoadDrop(rc.DropLists...)
		if err != nil {
			return nil, fmt.Errorf("config: reputation.drop_lists: %w", err)
		}
		rep.Drop = drop
	}
	if rc.ASNDB != "" {
		t, err := reputation.LoadASN(rc.ASNDB)
		if err != nil {
			return nil, fmt.Errorf("config: reputation.asn_db: %w", err)
		}
		rep.ASN = t
	}
	eng.SetReputation(rep)
	log.Info("reputation", "dnsbl_sites", len(rc.DNSBL), "dns_servers", len(servers), "spf_pools", rep.Pools != nil,
		"drop_networks", rep.Drop.Len(), "asn_ranges", rep.ASN.Len(), "net_threshold", rc.NetThreshold, "follow", len(rc.Follow))
	return rep.Drop, nil
}

// reloadDrop reads the network lists again every dropReload and on SIGHUP
// until ctx is done. A list that fails to load keeps its last good copy.
func reloadDrop(ctx context.Context, d *reputation.DropList, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(dropReload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-hup:
		}
		if err := d.Reload(); err != nil {
			log.Warn("reputation: drop lists: keeping the last good copy", "err", err.Error())
		}
	}
}
