package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"moat/internal/admin"
	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/dialog"
	"moat/internal/greylist"
	"moat/internal/relay"
	"moat/internal/server"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/store/redis"
	"moat/internal/tarpit"
	"moat/internal/traps"
)

func runCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "run the proxy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return err
			}
			return run(cfg)
		},
	}
}

func newLogger(cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// openStore opens the configured store.
func openStore(cfg *config.Config) (store.Store, error) {
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
		Log:      newLogger(cfg),
	})
}

// newEngine builds the decision logic over st.
func newEngine(cfg *config.Config, st store.Store) (*classify.Engine, *traps.Set, error) {
	ts, err := traps.New(st, cfg.Traps.Addresses)
	if err != nil {
		return nil, nil, err
	}
	if err := setupBait(cfg, ts); err != nil {
		return nil, nil, err
	}
	c := clock.Real{}
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
	eng.SetReputation(reputationPolicy(cfg)) // the daemon adds DNS and lists in startReputation
	return eng, ts, nil
}

func run(cfg *config.Config) error {
	log := newLogger(cfg)
	st, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	eng, ts, err := newEngine(cfg, st)
	if err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if cfg.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return fmt.Errorf("config: tls.cert/tls.key: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	dialer := &relay.Dialer{Addr: cfg.Backend, Proxy: cfg.BackendProxyProtocol}
	dcfg := &dialog.Config{
		Hostname:       cfg.Hostname,
		GreetDelay:     cfg.Greylist.GreetDelay.Duration,
		MaxRcpts:       cfg.Limits.MaxRcpts,
		MaxCommands:    cfg.Limits.MaxCommands,
		MaxErrors:      cfg.Limits.MaxErrors,
		MaxMessageSize: int64(cfg.Limits.MaxMessageSize),
		IdleTimeout:    cfg.Limits.IdleTimeout.Duration,
		DataTimeout:    cfg.Limits.DataTimeout.Duration,
		BackendTimeout: cfg.Limits.BackendTimeout.Duration,
		TLS:            tlsCfg,
	}
	miner, err := newMiner(cfg, st, eng, log)
	if err != nil {
		return err
	}
	dcfg.Hooks.BackendRcpt = miner.BackendRcpt
	srv := server.New(server.Config{
		Hostname:       cfg.Hostname,
		MaxConns:       cfg.Limits.MaxConns,
		MaxConnsPerIP:  cfg.Limits.MaxConnsPerIP,
		TrustedProxies: cfg.TrustedProxies.Nets(),
	}, eng, dialer, dcfg, log)
	tp, err := tarpit.New(tarpit.Config{
		Hostname:    cfg.Hostname,
		Stutter:     cfg.Tarpit.Stutter.Duration,
		MaxConns:    cfg.Tarpit.MaxConns,
		MaxBytes:    int64(cfg.Tarpit.MaxBytes),
		MaxDuration: cfg.Tarpit.MaxDuration.Duration,
		IdleTimeout: cfg.Tarpit.IdleTimeout.Duration,
	}, tarpit.Events{Done: srv.TarpitDone, Rcpt: miner.TarpitRcpt})
	if err != nil {
		return err
	}
	srv.SetTarpit(tp)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	aln, err := admin.Listen(cfg.AdminSocket())
	if err != nil {
		return err
	}
	defer os.Remove(cfg.AdminSocket())
	svc := &admin.Service{Eng: eng, Traps: ts, Miner: miner, Live: func() admin.Live {
		s := srv.Stats()
		return admin.Live{
			Connections:   s.Connections,
			TarpitHeld:    s.Tarpit.Held,
			TarpitSeconds: srv.HeldNow(),
			TarpitRefused: uint64(s.Refused["tarpit_full"]),
			Sessions:      s.Sessions,
			Refused:       s.Refused,
			StoreErrors:   s.StoreErrors,
		}
	}}
	if err := startReputation(ctx, cfg, eng, log); err != nil {
		return err
	}
	go svc.Serve(ctx, aln)
	if err := startAdminTCP(ctx, cfg, svc, log); err != nil { // admin_tcp.go
		return err
	}
	if err := startTraps(ctx, cfg, st, ts, miner, log); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	go func() {
		// Traps added on another moat sharing the store apply here too.
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := ts.Reload(); err != nil {
					log.Warn("traps: reload", "err", err.Error())
				}
			}
		}
	}()
	log.Info("moat started", "version", version, "listen", ln.Addr().String(), "backend", cfg.Backend,
		"proxy_protocol", cfg.BackendProxyProtocol, "data_dir", cfg.DataDir, "tls", tlsCfg != nil)
	err = srv.Serve(ctx, ln)
	tp.Close()
	log.Info("moat stopped")
	return err
}
