package daemon

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"

	"moat/internal/admin"
	"moat/internal/classify"
	"moat/internal/config"
	"moat/internal/dialog"
	"moat/internal/greylist"
	"moat/internal/server"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/tarpit"
)

// What a reload applies, and how. Every part that changes live holds its
// settings behind one atomic pointer and is handed a whole new value:
// what is under way (a grey session, a hand-off, a splice, a held
// connection) finishes with the settings it started with or picks up the
// new ones at its next check, and nothing is closed for a reload. The
// functions below turn the configuration into each part's settings; New
// and Reload both use them, so a setting means the same at start and
// after a reload.

// restartKeys are the keys (or whole tables) whose change a reload does
// not apply, because what they shape is opened or built once: the
// listeners, the store, the files in data_dir, the process's user, the
// words the dialog and the tarpit share, the way to the backend, the trap
// miner and the log followers, the kernel bypass's table, the log's
// output, and the metrics' listener and chart.
var restartKeys = []string{
	"listen", "hostname", "backend", "backend_proxy_protocol", "data_dir", "store", "user",
	"traps.domains", "traps.min_hosts", "traps.auto", "traps.follow", "traps.reject_pattern",
	"bait", "admin", "redis", "bypass", "log.format", "log.output", "reputation.follow", "metrics",
}

// needsRestart reports whether key is one of restartKeys or in one of
// their tables.
func needsRestart(key string) bool {
	for _, k := range restartKeys {
		if key == k || strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

func engineConfig(cfg *config.Config) classify.Config {
	return classify.Config{
		Whitelist: cfg.Whitelist.Nets(),
		Blacklist: cfg.Blacklist.Nets(),
		BlackTTL:  cfg.BlackTTL.Duration,
		WhiteTTL:  cfg.Greylist.WhiteTTL.Duration,
		GreyTTL:   cfg.Greylist.RetryWindow.Duration,
	}
}

func greylistConfig(cfg *config.Config) greylist.Config {
	return greylist.Config{
		MinRetry:    cfg.Greylist.MinRetry.Duration,
		RetryWindow: cfg.Greylist.RetryWindow.Duration,
		PassTTL:     cfg.Greylist.WhiteTTL.Duration,
		IPv4Prefix:  cfg.Greylist.IPv4Prefix,
		IPv6Prefix:  cfg.Greylist.IPv6Prefix,

		PassOnNextRetry: cfg.Greylist.PassOnNextRetry,
	}
}

func serverConfig(cfg *config.Config) server.Config {
	return server.Config{
		Hostname:       cfg.Hostname,
		MaxConns:       cfg.Limits.MaxConns,
		MaxConnsPerIP:  cfg.Limits.MaxConnsPerIP,
		TrustedProxies: cfg.TrustedProxies.Nets(),
	}
}

// NewWords are the words a configuration speaks with: one Words for the
// grey dialog and the tarpit, so that both speak alike. tls says STARTTLS
// is offered.
func NewWords(cfg *config.Config, tls bool) *smtp.Words {
	return smtp.NewWords(cfg.Hostname, cfg.Greylist.GreetDelay.Duration > 0, tls, int64(cfg.Limits.MaxMessageSize))
}

// TarpitConfig is the tarpit the [tarpit] table asks for, speaking words,
// with the grey dialog's limits: the daemon's, and the one the simulator
// charges bots with.
func TarpitConfig(cfg *config.Config, words *smtp.Words) tarpit.Config {
	return tarpit.Config{
		Words:       words,
		MaxErrors:   cfg.Limits.MaxErrors,
		MaxCommands: cfg.Limits.MaxCommands,
		MaxRcpts:    cfg.Limits.MaxRcpts,
		Stutter:     cfg.Tarpit.Stutter.Duration,
		MaxConns:    cfg.Tarpit.MaxConns,
		MaxBytes:    int64(cfg.Tarpit.MaxBytes),
		MaxDuration: cfg.Tarpit.MaxDuration.Duration,
		IdleTimeout: cfg.Tarpit.IdleTimeout.Duration,
		DataPace:    cfg.Tarpit.DataPace,
		Finals:      tarpitFinals(cfg.Tarpit.FinalReply),
	}
}

// tarpitConfig is TarpitConfig with our domains: a black host naming
// another is asking to relay.
func (d *Daemon) tarpitConfig(cfg *config.Config) tarpit.Config {
	c := TarpitConfig(cfg, d.words)
	c.Ours = d.domains.ours(cfg)
	return c
}

// tarpitFinals reads [tarpit.final_reply] into the tarpit's replies by
// source. config checked every value and names only sources that exist.
func tarpitFinals(f config.FinalReply) map[store.Source]tarpit.Final {
	out := map[store.Source]tarpit.Final{}
	for reason, v := range f.ByReason() {
		src, err := store.ParseSource(reason)
		if err != nil {
			continue
		}
		if final, err := tarpit.ParseFinal(v); err == nil {
			out[src] = final
		}
	}
	return out
}

// dialogConfig is what a grey session is given; tlsCfg nil: no STARTTLS.
func (d *Daemon) dialogConfig(cfg *config.Config, tlsCfg *tls.Config) *dialog.Config {
	return &dialog.Config{
		Words:           d.words,
		GreetDelay:      cfg.Greylist.GreetDelay.Duration,
		MaxRcpts:        cfg.Limits.MaxRcpts,
		MaxCommands:     cfg.Limits.MaxCommands,
		MaxErrors:       cfg.Limits.MaxErrors,
		MaxMessageSize:  int64(cfg.Limits.MaxMessageSize),
		IdleTimeout:     cfg.Limits.IdleTimeout.Duration,
		DataTimeout:     cfg.Limits.DataTimeout.Duration,
		DataDoneTimeout: cfg.Limits.DataDoneTimeout.Duration,
		MinDataRate:     int64(cfg.Limits.MinDataRate),
		BackendTimeout:  cfg.Limits.BackendTimeout.Duration,
		TLS:             tlsCfg,
		BackendTLS:      backendTLS(cfg.Backend),
		Hooks:           d.hooks,
		Observe:         cfg.Mode == "observe",
		Ours:            d.domains.ours(cfg),
	}
}

// Reload reads the configuration file again and applies what can change
// while moat runs: the white and black lists, the traps, the greylist and
// tarpit timings, the limits, the reputation settings and lists, the TLS
// certificate and key (read again even when their paths are the same: a
// renewed certificate), and the log level. It logs what changed, and the
// changed keys that need a restart.
//
// Everything that reads a file is loaded before anything is applied: a
// configuration with an error, or a TLS key or list that does not load,
// is refused whole, logged, and the running configuration stays.
func (d *Daemon) Reload() (admin.Reloaded, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	res := admin.Reloaded{Config: d.ConfigPath}
	refuse := func(err error) (admin.Reloaded, error) {
		d.Log.Error("reload: refused, the running configuration stays", "config", d.ConfigPath, "err", err.Error())
		return res, err
	}
	cfg, err := config.Load(d.ConfigPath)
	if err != nil {
		return refuse(err)
	}
	for _, k := range config.Diff(d.applied, cfg) {
		if !needsRestart(k) {
			res.Applied = append(res.Applied, k)
		}
	}
	for _, k := range config.Diff(d.Config, cfg) {
		if needsRestart(k) {
			res.Restart = append(res.Restart, k)
		}
	}
	// The words a grey session and the tarpit share are built once;
	// a grey session must not announce another name than the tarpit.
	cfg.Hostname = d.Config.Hostname
	tlsCfg, err := loadTLS(cfg)
	if err != nil {
		return refuse(err)
	}
	rep, err := buildReputation(cfg, d.Log)
	if err != nil {
		return refuse(err)
	}
	// With the store unreachable the configured traps still change;
	// the stored ones come back with it.
	if err := d.Engine.Traps().SetConfigured(cfg.Traps.Addresses); err != nil && !errors.Is(err, store.ErrUnavailable) {
		return refuse(err)
	}

	d.Engine.SetConfig(engineConfig(cfg))
	d.Engine.Greylist().SetConfig(greylistConfig(cfg))
	d.domains.set(cfg)
	d.Engine.SetReputation(rep)
	d.drop.set(rep.Drop)
	// The words the dialog and the tarpit share follow the greet delay,
	// the certificate and the size limit.
	d.words.Reshape(cfg.Greylist.GreetDelay.Duration > 0, tlsCfg != nil, int64(cfg.Limits.MaxMessageSize))
	if err := d.Tarpit.SetLimits(d.tarpitConfig(cfg)); err != nil {
		// The configuration was validated: this is a bug, and the
		// tarpit keeps its limits.
		d.Log.Error("reload: tarpit limits", "err", err.Error())
	}
	d.Server.SetConfig(serverConfig(cfg))
	d.Server.SetDialog(d.dialogConfig(cfg, tlsCfg))
	d.tls.Store(tlsCfg != nil)
	if d.Level != nil {
		var lv slog.Level
		lv.UnmarshalText([]byte(cfg.Log.Level))
		d.Level.Set(lv)
	}
	d.applied = cfg
	// The whitelist, the blacklist or the network lists may have
	// changed what the kernel lets past moat.
	if m := d.mirror.Load(); m != nil {
		if err := m.Sync(); err != nil {
			d.Log.Warn("reload: bypass: syncing the kernel's sets", "err", err.Error())
		}
	}

	attrs := []any{"config", d.ConfigPath, "changed", append([]string{}, res.Applied...)}
	if tlsCfg != nil {
		leaf := tlsCfg.Certificates[0].Leaf
		attrs = append(attrs, "tls_subject", leaf.Subject.CommonName, "tls_not_after", leaf.NotAfter.UTC())
	}
	d.Log.Info("reload: applied", attrs...)
	if len(res.Restart) > 0 {
		d.Log.Warn("reload: changed keys that apply only after a restart", "keys", res.Restart)
	}
	return res, nil
}
