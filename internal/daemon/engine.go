package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"blitiri.com.ar/go/spf"

	"moat/internal/admin"
	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/dialog"
	"moat/internal/greylist"
	"moat/internal/ledger"
	"moat/internal/logsink"
	"moat/internal/relay"
	"moat/internal/reputation"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/store/redis"
	"moat/internal/traps"
)

// LogOptions is where the [log] table sends the daemon's lines.
func LogOptions(cfg *config.Config) logsink.Options {
	return logsink.Options{Level: cfg.Log.Level, Format: cfg.Log.Format, Output: cfg.Log.Output}
}

// BoltPath is the embedded store's file.
func BoltPath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "moat.db") }

// OpenStore opens the configured store for the daemon: the bolt file in
// data_dir, made with data_dir when missing, or the shared Redis store,
// which opens whether Redis answers yet or not.
func OpenStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	return openStore(cfg, log)
}

// OpenExistingStore opens the configured store for an operator's command
// when no daemon runs. It never makes one: a command run with the wrong
// -c (or from another directory, with a relative data_dir) must not
// write to a new, empty store and report success.
func OpenExistingStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	if cfg.Store == "" || cfg.Store == "bolt" {
		if _, err := os.Stat(BoltPath(cfg)); errors.Is(err, fs.ErrNotExist) {
			return nil, noStore(BoltPath(cfg))
		}
	}
	return openStore(cfg, log)
}

// ErrNoStore says that the configuration points where there is no store.
var ErrNoStore = errors.New("no moat store")

type noStore string

func (p noStore) Error() string     { return fmt.Sprintf("no moat store at %s: is -c right?", string(p)) }
func (p noStore) Is(err error) bool { return err == ErrNoStore }

func openStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	switch cfg.Store {
	case "", "bolt":
		return bolt.Open(BoltPath(cfg), bolt.Options{Log: log})
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
	g := greylist.New(greylistConfig(cfg), st, c)
	eng := classify.New(engineConfig(cfg), st, c, g, ts)
	eng.SetReputation(reputationPolicy(cfg))
	return eng, nil
}

// NewSimEngine is NewEngine for a simulation (moat evaluate): when cfg asks
// for SPF-aware pools, they ask resolver, which answers from memory, and
// read time from c. The daemon's own pools ask name servers
// (loadReputation); DNS lists, network lists and the AS table are never
// part of a simulation.
func NewSimEngine(cfg *config.Config, st store.Store, c clock.Clock, resolver spf.DNSResolver) (*classify.Engine, error) {
	eng, err := NewEngine(cfg, st, c)
	if err != nil || !cfg.Reputation.SPFPools {
		return eng, err
	}
	rep := reputationPolicy(cfg)
	// Reserved names (.example) are what a simulation's senders use; its
	// resolver never leaves the process.
	rep.Pools = greylist.NewPools(greylist.PoolsConfig{Resolver: resolver, Clock: c,
		Timeout: cfg.Reputation.DNSBLTimeout.Duration, AskReserved: true})
	eng.SetReputation(rep)
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

// ProbeBackend reads the backend's EHLO as the daemon does at start and
// every ten minutes (dialog.Probe, with the daemon's dialer and words),
// within timeout: what moat check asks.
func ProbeBackend(cfg *config.Config, timeout time.Duration) (smtp.Extensions, error) {
	d := newDialer(cfg)
	d.Timeout = timeout
	ext, _, err := dialog.Probe(context.Background(), &dialog.Config{Words: NewWords(cfg, false), BackendTimeout: timeout}, d)
	return ext, err
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
	l, err := ledger.New(st, ledger.Config{})
	if err != nil {
		return nil, err
	}
	svc := &admin.Service{Eng: eng, Ledger: l, Bypass: bypassStatus(cfg)}
	if mining {
		if svc.Miner, err = newMiner(cfg, eng, newDialer(cfg), log); err != nil {
			return nil, err
		}
	}
	return svc, nil
}
