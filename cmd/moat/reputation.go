package main

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

// reputationPolicy is the part of the [reputation] table that needs no
// I/O: thresholds, escalation and karma. The command line uses it when it
// opens the store itself.
func reputationPolicy(cfg *config.Config) classify.Reputation {
	r := cfg.Reputation
	return classify.Reputation{
		DNSBLThreshold: r.DNSBLThreshold,
		AllowThreshold: r.DNSBLAllowThreshold,
		AllowTTL:       r.DNSBLAllowTTL.Duration,
		Nets: reputation.Escalation{
			Threshold:    r.NetThreshold,
			Window:       r.NetWindow.Duration,
			TTL:          r.NetTTL.Duration,
			V4Prefix:     r.NetPrefixV4,
			V6Prefix:     r.NetPrefixV6,
			ASNThreshold: r.ASNThreshold,
		},
		Karma: reputation.KarmaPolicy{
			SpamWeight: r.KarmaSpamWeight,
			HamWeight:  r.KarmaHamWeight,
			HalfLife:   r.KarmaHalfLife.Duration,
			GreyBelow:  r.KarmaGreyBelow,
			BlackBelow: r.KarmaBlackBelow,
		},
	}
}

// startReputation gives the daemon's engine its DNS lists, network lists,
// AS table and SPF pools, and starts the log followers and the reloading
// of the network lists (every ten minutes and on SIGHUP).
func startReputation(ctx context.Context, cfg *config.Config, eng *classify.Engine, log *slog.Logger) error {
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
		d, err := reputation.NewDNSBL(reputation.DNSBLConfig{Sites: rc.DNSBL, Servers: servers, Timeout: rc.DNSBLTimeout.Duration, Log: log})
		if err != nil {
			return fmt.Errorf("config: reputation.dnsbl: %w", err)
		}
		rep.DNSBL = d
	}
	if rc.SPFPools && len(servers) > 0 {
		rep.Pools = greylist.NewPools(greylist.PoolsConfig{Servers: servers, Timeout: rc.DNSBLTimeout.Duration})
	}
	if len(rc.DropLists) > 0 {
		d, err := reputation.LoadDrop(rc.DropLists...)
		if err != nil {
			return fmt.Errorf("config: reputation.drop_lists: %w", err)
		}
		rep.Drop = d
		go reloadDrop(ctx, d, log)
	}
	if rc.ASNDB != "" {
		t, err := reputation.LoadASN(rc.ASNDB)
		if err != nil {
			return fmt.Errorf("config: reputation.asn_db: %w", err)
		}
		rep.ASN = t
	}
	eng.SetReputation(rep)
	for _, f := range rc.Follow {
		fl := reputation.NewFollower(f.File, f.Format, func(fb reputation.Feedback) {
			res, err := eng.Feedback(fb)
			if err != nil {
				log.Warn("feedback", "client", fb.IP.String(), "verdict", string(fb.Verdict), "source", fb.Source, "err", err.Error())
				return
			}
			log.Info("feedback", "client", res.IP, "verdict", string(fb.Verdict), "source", fb.Source,
				"karma", res.Karma, "class", res.Class, "changed", res.Changed)
		})
		fl.Log = log
		go fl.Run(ctx)
	}
	log.Info("reputation", "dnsbl_sites", len(rc.DNSBL), "dns_servers", len(servers), "spf_pools", rep.Pools != nil,
		"drop_networks", rep.Drop.Len(), "asn_ranges", rep.ASN.Len(), "net_threshold", rc.NetThreshold, "follow", len(rc.Follow))
	return nil
}

func reloadDrop(ctx context.Context, d *reputation.DropList, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(10 * time.Minute)
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
