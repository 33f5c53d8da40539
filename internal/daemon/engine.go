package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"moat/internal/admin"
	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/greylist"
	"moat/internal/relay"
	"moat/internal/reputation"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/store/redis"
	"moat/internal/traps"
)

// NewLogger is the logger the [log] table asks for, on standard error.
func NewLogger(cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// OpenStore opens the configured store: the bolt file in data_dir, or the
// shared Redis store.
func OpenStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	switch cfg.Store {
	case "", "bolt":
		return bolt.Open(filepath.Join(cfg.DataDir, "moat.db"), bolt.Options{})
	}
	return redis.Open(cfg.Store, redis.Options{
		Prefix:   cfg.Redis.Prefix,
		Timeout:  cfg.Redis.Timeout.Duration,
		CacheTTL: cfg.Redis.CacheTTL.Duration,
		StaleTTL: cfg.Redis.StaleTTL.Duration,
		Log:      log,
	})
}

// NewEngine builds the decision logic of cfg over st, reading time only
// from c: the trap set, the greylist and the policy that needs no I/O
// (lists, TTLs, reputation thresholds, escalation, karma). It opens no
// file and no socket, so a simulation on a fake clock builds the same
// engine as the daemon; the daemon adds bait (loadBait) and the DNS and
// network lists (in New).
func NewEngine(cfg *config.Config, st store.Store, c clock.Clock) (*classify.Engine, error) {
	ts, err := traps.New(st, cfg.Traps.Addresses)
	if err != nil {
		return nil, err
	}
	g := greylist.New(greylist.Config{
		MinRetry:    cfg.Greylist.MinRetry.Duration,
		RetryWindow: cfg.Greylist.RetryWindow.Duration,
		PassTTL:     cfg.Greylist.WhiteTTL.Duration,
		IPv4Prefix:  cfg.Greylist.IPv4Prefix,
		IPv6Prefix:  cfg.Greylist.IPv6Prefix,
	}, st, c)
	eng := classify.New(classify.Config{
		Whitelist: cfg.Whitelist.Nets(),
		Blacklist: cfg.Blacklist.Nets(),
		BlackTTL:  cfg.BlackTTL.Duration,
		WhiteTTL:  cfg.Greylist.WhiteTTL.Duration,
		GreyTTL:   cfg.Greylist.RetryWindow.Duration,
	}, st, c, g, ts)
	eng.SetReputation(reputationPolicy(cfg))
	return eng, nil
}

// reputationPolicy is the part of the [reputation] table that needs no
// I/O: thresholds, escalation and karma.
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

// loadBait makes minted bait addresses at bait.domain traps; the key is
// made on first use. Without bait.domain there is no bait: an address is
// bait only at its domain.
func loadBait(cfg *config.Config, ts *traps.Set) error {
	if cfg.Bait.Domain == "" {
		return nil
	}
	key, err := traps.LoadKey(cfg.BaitKeyFile())
	if err != nil {
		return fmt.Errorf("config: bait.secret_file: %w", err)
	}
	b, err := traps.NewBait(key, cfg.Bait.Domain)
	if err != nil {
		return fmt.Errorf("config: bait.domain: %w", err)
	}
	ts.SetBait(b)
	return nil
}

// newDialer is the way to the backend: white splices, grey hand-offs and
// the trap miner's probes all go through the one a process builds.
func newDialer(cfg *config.Config) *relay.Dialer {
	return &relay.Dialer{Addr: cfg.Backend, Proxy: cfg.BackendProxyProtocol}
}

// newMiner builds the trap miner. Its probe asks the backend through
// dialer; a harvester caught using a bait address is blacklisted.
func newMiner(cfg *config.Config, eng *classify.Engine, dialer *relay.Dialer, log *slog.Logger) (*traps.Miner, error) {
	return traps.NewMiner(traps.MinerConfig{
		MinHosts: cfg.Traps.MinHosts,
		Auto:     cfg.Traps.Auto,
		Domains:  cfg.Traps.Domains,
		Probe:    &traps.Prober{Dialer: dialer, Hostname: cfg.Hostname, Timeout: 20 * time.Second},
		Log:      log,
		Harvested: func(h traps.Harvest, client netip.Addr) {
			if err := eng.Blacklist(h.IP, store.SourceBait, h.Reason()); err != nil {
				log.Warn("traps: blacklisting harvester", "ip", h.IP.String(), "err", err.Error())
				return
			}
			log.Info("traps: bait used in the tarpit", "addr", h.Addr, "harvester", h.IP.String(),
				"harvested", h.At, "sender", client.String())
		},
	}, eng.Store(), eng.Traps())
}

// Offline is the admin service of a moat that is not running, over a store
// the caller opened: the operator's commands use it when no daemon answers.
// With mining it has a trap miner too, which reads its records from the
// store when built, so only the commands that mine ask for one.
func Offline(cfg *config.Config, st store.Store, mining bool, log *slog.Logger) (*admin.Service, error) {
	eng, err := NewEngine(cfg, st, clock.Real{})
	if err != nil {
		return nil, err
	}
	if err := loadBait(cfg, eng.Traps()); err != nil {
		return nil, err
	}
	svc := &admin.Service{Eng: eng, Bypass: bypassStatus(cfg)}
	if mining {
		if svc.Miner, err = newMiner(cfg, eng, newDialer(cfg), log); err != nil {
			return nil, err
		}
	}
	return svc, nil
}
