// Package daemon assembles moat from its configuration: the store, the
// decision engine, the SMTP server with its dialog and tarpit, the admin
// API, the bait page, the log followers and the reload tickers. It is the
// one place that knows how the parts fit; "moat run" is New and Run.
//
// New builds every part and opens only the store and the files the
// configuration names; Run opens the listeners and serves until its
// context ends. The parts stay reachable on the Daemon, so that the
// operator's offline commands (Offline), a simulation (NewEngine on a fake
// clock) and a future live reload can use them without a second assembly.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"moat/internal/admin"
	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/dialog"
	"moat/internal/relay"
	"moat/internal/reputation"
	"moat/internal/server"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/tarpit"
	"moat/internal/traps"
)

// trapReload is how often the daemon rereads the stored traps, for traps
// added on another moat sharing the store.
const trapReload = 10 * time.Second

// Daemon is one moat: its parts, built by New, served by Run.
type Daemon struct {
	Config  *config.Config
	Log     *slog.Logger
	Version string // said in the start-up log line

	Store  store.Store
	Engine *classify.Engine // its trap set is Engine.Traps()
	Dialer *relay.Dialer    // the backend: hand-offs and trap probes alike
	Dialog *dialog.Config
	Miner  *traps.Miner
	Server *server.Server
	Tarpit *tarpit.Tarpit
	Admin  *admin.Service
	Drop   *reputation.DropList // imported network lists; nil without reputation.drop_lists
}

// New builds a daemon from cfg: it opens the store and loads the files the
// configuration names (TLS key pair, bait key, network lists, AS table),
// and starts the tarpit's scheduler. It opens no listener. On an error
// nothing stays open.
func New(cfg *config.Config, log *slog.Logger) (d *Daemon, err error) {
	d = &Daemon{Config: cfg, Log: log}
	if d.Store, err = OpenStore(cfg, log); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.Engine, err = NewEngine(cfg, d.Store, clock.Real{}); err != nil {
		return nil, err
	}
	if err = loadBait(cfg, d.Engine.Traps()); err != nil {
		return nil, err
	}
	tlsCfg, err := loadTLS(cfg)
	if err != nil {
		return nil, err
	}
	d.Dialer = newDialer(cfg)
	if d.Miner, err = newMiner(cfg, d.Engine, d.Dialer, log); err != nil {
		return nil, err
	}
	// The grey dialog and the tarpit speak the same words.
	words := smtp.NewWords(cfg.Hostname, cfg.Greylist.GreetDelay.Duration > 0, tlsCfg != nil, int64(cfg.Limits.MaxMessageSize))
	d.Dialog = &dialog.Config{
		Words:           words,
		GreetDelay:      cfg.Greylist.GreetDelay.Duration,
		MaxRcpts:        cfg.Limits.MaxRcpts,
		MaxCommands:     cfg.Limits.MaxCommands,
		MaxErrors:       cfg.Limits.MaxErrors,
		MaxMessageSize:  int64(cfg.Limits.MaxMessageSize),
		IdleTimeout:     cfg.Limits.IdleTimeout.Duration,
		DataTimeout:     cfg.Limits.DataTimeout.Duration,
		DataDoneTimeout: cfg.Limits.DataDoneTimeout.Duration,
		BackendTimeout:  cfg.Limits.BackendTimeout.Duration,
		TLS:             tlsCfg,
		BackendTLS:      backendTLS(cfg.Backend),
		Hooks:           dialog.Hooks{BackendRcpt: d.Miner.BackendRcpt},
	}
	d.Server = server.New(server.Config{
		Hostname:       cfg.Hostname,
		MaxConns:       cfg.Limits.MaxConns,
		MaxConnsPerIP:  cfg.Limits.MaxConnsPerIP,
		TrustedProxies: cfg.TrustedProxies.Nets(),
	}, d.Engine, d.Dialer, d.Dialog, log)
	if d.Tarpit, err = tarpit.New(tarpit.Config{
		Words:       words,
		MaxErrors:   cfg.Limits.MaxErrors,
		MaxCommands: cfg.Limits.MaxCommands,
		MaxRcpts:    cfg.Limits.MaxRcpts,
		Stutter:     cfg.Tarpit.Stutter.Duration,
		MaxConns:    cfg.Tarpit.MaxConns,
		MaxBytes:    int64(cfg.Tarpit.MaxBytes),
		MaxDuration: cfg.Tarpit.MaxDuration.Duration,
		IdleTimeout: cfg.Tarpit.IdleTimeout.Duration,
	}, tarpit.Events{Done: d.Server.TarpitDone, Rcpt: d.Miner.TarpitRcpt}); err != nil {
		return nil, err
	}
	d.Server.SetTarpit(d.Tarpit)
	d.Admin = &admin.Service{Eng: d.Engine, Miner: d.Miner, Live: live(d.Server), Bypass: bypassStatus(cfg)}
	if d.Drop, err = loadReputation(cfg, d.Engine, log); err != nil {
		return nil, err
	}
	return d, nil
}

// loadTLS loads the certificate STARTTLS offers; nil when none is set.
func loadTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.TLS.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("config: tls.cert/tls.key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// backendTLS is the TLS moat uses for STARTTLS to the backend, which it
// does only when the client spoke TLS with moat and the backend is on
// another machine. Like MTAs among themselves (Postfix's "may" level), it
// is opportunistic: the backend's certificate is not checked, since a
// backend behind moat rarely has one a public authority signed, and
// refusing to hand over would only hold mail back; what it protects
// against is reading on the wire.
func backendTLS(backend string) *tls.Config {
	host, _, err := net.SplitHostPort(backend)
	if err != nil {
		host = backend
	}
	return &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
}

// watchBackend reads the backend's EHLO now, before moat listens (a slow
// backend holds the start a few seconds at most), then periodically;
// hand-offs read it too. What grey hosts are offered, and the tarpit's
// EHLO with it, follows.
func (d *Daemon) watchBackend(ctx context.Context) {
	report := func(ext smtp.Extensions, changed bool, err error) {
		switch {
		case err != nil:
			d.Log.Warn("backend: cannot read its EHLO; grey hosts are offered what they were", "backend", d.Config.Backend, "err", err.Error())
		case changed:
			d.Log.Info("backend: extensions changed", "backend", d.Config.Backend, "size", ext.Size, "8bitmime", ext.EightBit,
				"smtputf8", ext.SMTPUTF8, "dsn", ext.DSN, "starttls", ext.StartTLS)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	report(dialog.Probe(pctx, d.Dialog, d.Dialer))
	cancel()
	go dialog.Watch(ctx, d.Dialog, d.Dialer, report)
}

// Run opens the listeners (the admin socket first: it refuses to start a
// second moat on the same data_dir; the SMTP port last, so that whoever
// sees it open finds every other part serving), starts the background
// work and serves until ctx is done. It returns once open sessions have
// ended or their grace period has passed. What it started before an error
// stops when ctx is done.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.Config
	aln, err := admin.Listen(cfg.AdminSocket())
	if err != nil {
		return err
	}
	defer os.Remove(cfg.AdminSocket())
	go d.Admin.Serve(ctx, aln)
	if err := serveAdminTCP(ctx, cfg.Admin, d.Admin, d.Log); err != nil {
		return err
	}
	if err := serveBait(ctx, cfg.Bait, d.Engine.Traps(), d.Log); err != nil {
		return err
	}
	go d.Miner.Run(ctx)
	logLine, err := startBypass(ctx, cfg, d.Engine, d.Log) // bypass.go
	if err != nil {
		return err
	}
	if err := follow(ctx, cfg, d.Engine, d.Miner, logLine, d.Log); err != nil {
		return err
	}
	if d.Drop != nil {
		go reloadDrop(ctx, d.Drop, d.Log)
	}
	go d.Engine.Traps().Watch(ctx, trapReload, d.Log)
	d.watchBackend(ctx)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	d.Log.Info("moat started", "version", d.Version, "listen", ln.Addr().String(), "backend", cfg.Backend,
		"proxy_protocol", cfg.BackendProxyProtocol, "data_dir", cfg.DataDir, "tls", d.Dialog.TLS != nil)
	err = d.Server.Serve(ctx, ln)
	d.Log.Info("moat stopped")
	return err
}

// Close stops the tarpit and closes the store. Call it after Run returns.
func (d *Daemon) Close() error {
	var errs []error
	if d.Tarpit != nil {
		errs = append(errs, d.Tarpit.Close())
	}
	if d.Store != nil {
		errs = append(errs, d.Store.Close())
	}
	return errors.Join(errs...)
}
