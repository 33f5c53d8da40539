// Package daemon assembles moat from its configuration: the store, the
// decision engine, the SMTP server with its dialog and tarpit, the admin
// API, the bait page, the log followers and the reload tickers. It is the
// one place that knows how the parts fit; "moat run" is New and Run.
//
// New builds every part and opens only the store and the files the
// configuration names; Run opens the listeners (or takes the one systemd
// passes), drops to the configured user and serves until its context
// ends. Reload (SIGHUP, "moat reload") reads the configuration again and
// hands the parts that can change live their new settings (live.go); the
// parts stay reachable on the Daemon, so that the operator's offline
// commands (Offline) and a simulation (NewEngine on a fake clock) use
// them without a second assembly.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"moat/internal/admin"
	"moat/internal/buildinfo"
	"moat/internal/bypass"
	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/dialog"
	"moat/internal/ledger"
	"moat/internal/metrics"
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
	// Config is the configuration moat started with: what the
	// listeners, the store and the other parts a reload cannot change
	// were built from.
	Config *config.Config
	// ConfigPath is the file Reload reads; "" means the built-in
	// defaults.
	ConfigPath string
	Log        *slog.Logger
	// Level is the logger's level, which a reload sets; nil: a reload
	// leaves the level alone.
	Level *slog.LevelVar

	Store  store.Store
	Engine *classify.Engine // its trap set is Engine.Traps()
	Dialer *relay.Dialer    // the backend: hand-offs and trap probes alike
	// Dialog is what grey sessions were given at start; a reload gives
	// the server a new one (Server.SetDialog). Its Words, shared with
	// the tarpit, stay: the backend watch learns into them.
	Dialog *dialog.Config
	Miner  *traps.Miner
	Server *server.Server
	Tarpit *tarpit.Tarpit
	Admin  *admin.Service
	// Metrics counts what the parts do (metrics.go); Store is timed
	// through it.
	Metrics *metrics.Metrics

	reloadMu sync.Mutex     // one reload at a time
	applied  *config.Config // the configuration the last reload applied
	hooks    dialog.Hooks
	words    *smtp.Words
	domains  *ourDomains                   // the backend's domains, for relay attempts
	drop     dropLists                     // the imported network lists in force, for their own reload ticker
	tls      atomic.Bool                   // STARTTLS offered now
	mirror   atomic.Pointer[bypass.Mirror] // the kernel bypass, once started; a reload syncs it
	Ledger   *ledger.Ledger                // what black hosts' messages were told
}

// New builds a daemon from cfg: it opens the store and loads the files the
// configuration names (TLS key pair, bait key, network lists, AS table),
// and starts the tarpit's scheduler. It opens no listener. On an error
// nothing stays open.
func New(cfg *config.Config, log *slog.Logger) (_ *Daemon, err error) {
	d := &Daemon{Config: cfg, Log: log, applied: cfg}
	d.Metrics = metrics.New(metrics.Options{Step: cfg.Metrics.ChartStep.Duration, Live: d.liveMetrics})
	st, err := OpenStore(cfg, log)
	if err != nil {
		return nil, err
	}
	d.Store = d.Metrics.Store(st)
	defer func() {
		// d, not the result, which a failing return sets to nil.
		if err != nil {
			d.Close()
		}
	}()
	if d.Engine, err = NewEngine(cfg, d.Store, clock.Real{}); err != nil {
		return nil, err
	}
	d.Engine.SetHooks(classifyHooks(d.Metrics))
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
	d.domains = newOurDomains(d.Store, log, time.Now)
	d.domains.set(cfg)
	d.hooks = dialog.Hooks{
		BackendRcpt: func(client netip.Addr, rcpt string, r smtp.Reply) {
			d.Miner.BackendRcpt(client, rcpt, r)
			d.domains.backendRcpt(client, rcpt, r)
		},
		Backend: d.Metrics.Backend,
	}
	d.tls.Store(tlsCfg != nil)
	// The grey dialog and the tarpit speak the same words.
	d.words = NewWords(cfg, tlsCfg != nil)
	d.Dialog = d.dialogConfig(cfg, tlsCfg)
	d.Server = server.New(serverConfig(cfg), d.Engine, d.Dialer, d.Dialog, log)
	if d.Ledger, err = ledger.New(d.Store, ledger.Config{}); err != nil {
		return nil, err
	}
	d.Server.SetLedger(d.Ledger)
	if d.Tarpit, err = tarpit.New(d.tarpitConfig(cfg), d.tarpitEvents()); err != nil {
		return nil, err
	}
	d.Server.SetTarpit(d.Tarpit)
	d.Server.SetHooks(server.Hooks{White: d.Metrics.White, Grey: d.Metrics.Grey, Black: d.Metrics.Black})
	d.Admin = &admin.Service{Eng: d.Engine, Miner: d.Miner, Ledger: d.Ledger, Live: live(d.Server), Bypass: bypassStatus(cfg), Reload: d.Reload,
		Metrics: d.Metrics}
	rep, err := buildReputation(cfg, log)
	if err != nil {
		return nil, err
	}
	d.Engine.SetReputation(rep)
	d.drop.set(rep.Drop)
	return d, nil
}

// tarpitEvents are the server's, with the miner hearing every recipient
// a bot names.
func (d *Daemon) tarpitEvents() tarpit.Events {
	ev := d.Server.TarpitEvents()
	rcpt := ev.Rcpt
	ev.Rcpt = func(c tarpit.Conn, client netip.Addr, addr string) {
		rcpt(c, client, addr)
		d.Miner.TarpitRcpt(client, addr)
	}
	return ev
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
		d.Metrics.BackendProbe(err == nil)
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
// second moat on the same data_dir) and, with every socket open, drops
// to the configured user. Then it starts the background work and serves
// SMTP last, so that whoever is answered finds every other part serving,
// until ctx is done; SIGHUP reloads the configuration meanwhile. It
// returns once open sessions have ended or their grace period has passed.
// What it started before an error stops when ctx is done.
func (d *Daemon) Run(ctx context.Context) error {
	// SIGHUP's default action ends the process: take it over first.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg := d.Config
	ln, activated, err := listenSMTP(cfg.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	aln, err := admin.Listen(cfg.AdminSocket())
	if err != nil {
		return err
	}
	defer os.Remove(cfg.AdminSocket())
	atcp, token, err := listenAdminTCP(cfg.Admin)
	if err != nil {
		aln.Close()
		return err
	}
	bait, err := listenIfSet("bait.listen", cfg.Bait.Listen)
	if err != nil {
		aln.Close()
		closeAll(atcp)
		return err
	}
	mln, err := listenIfSet("metrics.listen", cfg.Metrics.Listen)
	if err != nil {
		aln.Close()
		closeAll(atcp, bait)
		return err
	}
	if err := dropPrivileges(cfg, d.ConfigPath, d.Log); err != nil {
		aln.Close()
		closeAll(atcp, bait, mln)
		return err
	}

	go d.Admin.Serve(ctx, aln)
	serveAdminTCP(ctx, atcp, token, d.Admin, d.Log)
	serveMetrics(ctx, mln, d.Metrics, d.Log)
	if err := serveBait(ctx, bait, cfg.Bait, d.Engine.Traps(), d.Log); err != nil {
		return err
	}
	go d.Miner.Run(ctx)
	mirror, err := startBypass(ctx, cfg, d.Engine, d.Log) // bypass.go
	if err != nil {
		return err
	}
	var logLine func(string)
	if mirror != nil {
		d.mirror.Store(mirror)
		logLine = mirror.LogLine
	}
	if err := follow(ctx, cfg, d.Engine, d.Miner, logLine, d.Log); err != nil {
		return err
	}
	go d.drop.reloadEvery(ctx, dropReload, d.Log)
	go d.Engine.Traps().Watch(ctx, trapReload, d.Log)
	go d.onHangup(ctx, hup)
	d.watchBackend(ctx)

	attrs := append(buildinfo.Read().Attrs(), "config", config.Source(d.ConfigPath), "listen", ln.Addr().String(),
		"socket_activation", activated, "backend", cfg.Backend, "proxy_protocol", cfg.BackendProxyProtocol,
		"data_dir", cfg.DataDir, "tls", d.tls.Load(), "user", currentUser())
	d.Log.Info("moat started", attrs...)
	err = d.Server.Serve(ctx, ln)
	d.Log.Info("moat stopped")
	return err
}

// onHangup reloads the configuration at every SIGHUP until ctx is done.
func (d *Daemon) onHangup(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			d.Reload() // it logs what it did, or why not
		}
	}
}

func closeAll(lns ...net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
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

// dropLists holds the imported network lists in force: a reload may
// replace them while their ticker runs.
type dropLists struct {
	mu sync.Mutex
	d  *reputation.DropList
}

func (l *dropLists) set(d *reputation.DropList) {
	l.mu.Lock()
	l.d = d
	l.mu.Unlock()
}

// reloadEvery reads the lists in force again every interval until ctx is
// done. A list that fails to load keeps its last good copy.
func (l *dropLists) reloadEvery(ctx context.Context, every time.Duration, log *slog.Logger) {
	clock.Every(ctx, every, func() {
		l.mu.Lock()
		d := l.d
		l.mu.Unlock()
		if d == nil {
			return
		}
		if err := d.Reload(); err != nil {
			log.Warn("reputation: drop lists: keeping the last good copy", "err", err.Error())
		}
	})
}
