package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"moat/internal/admin"
	"moat/internal/config"
	"moat/internal/daemon"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/store/redis"
)

// checkCmd is "moat check", like "postfix check": is the configuration
// valid (every problem with its key), does the backend answer, can the
// store be read, do the files load. One screen; exit 1 on any failure. It
// changes nothing: the usual use is before "moat reload", with moat
// running, so it asks the running daemon about the store rather than
// touching it.
func checkCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "check the configuration, the backend, the store and the files it names, and print a summary",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			w := c.OutOrStdout()
			source := config.Source(*cfgPath)
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				lines := strings.Split(err.Error(), "\n")
				for _, l := range lines {
					fmt.Fprintf(w, "%-5s %s\n", daemon.Fail, l)
				}
				return fmt.Errorf("check: %s: %d problems in the configuration", source, len(lines))
			}
			findings := []daemon.Finding{{What: "config", Detail: source + ": valid"}}
			findings = append(findings, daemon.Finding{What: "listen", Detail: listenDetail(cfg)})
			findings = append(findings, checkBackend(cfg))
			findings = append(findings, checkStore(cfg))
			findings = append(findings, daemon.CheckFiles(cfg)...)
			findings = append(findings, daemon.Finding{What: "log", Detail: fmt.Sprintf("level %s, format %s, to %s", cfg.Log.Level, cfg.Log.Format, cfg.Log.Output)})
			failed, warned := 0, 0
			for _, f := range findings {
				fmt.Fprintf(w, "%-5s %-22s %s\n", f.Level, f.What, f.Detail)
				switch f.Level {
				case daemon.Fail:
					failed++
				case daemon.Warn:
					warned++
				}
			}
			if failed > 0 {
				return fmt.Errorf("check: %d failed, %d warnings", failed, warned)
			}
			fmt.Fprintf(w, "moat can run with %s (%d warnings)\n", source, warned)
			return nil
		},
	}
}

func listenDetail(cfg *config.Config) string {
	return fmt.Sprintf("%s, hostname %s, admin socket %s (under systemd socket activation the port is moat.socket's)", cfg.Listen, cfg.Hostname, cfg.AdminSocket())
}

// checkBackend reads the backend's EHLO as moat does at start and every
// ten minutes (dialog.Probe: its own connection, PROXY header from
// 127.0.0.1, EHLO and QUIT). A backend that does not answer is a warning:
// moat runs, and answers 4xx for it until it does.
func checkBackend(cfg *config.Config) daemon.Finding {
	ext, err := daemon.ProbeBackend(cfg, 5*time.Second)
	if err != nil {
		return daemon.Finding{What: "backend", Level: daemon.Warn, Detail: fmt.Sprintf("%s: %v: moat answers 4xx for it until it answers", cfg.Backend, err)}
	}
	var offers []string
	if ext.Size > 0 {
		offers = append(offers, fmt.Sprintf("SIZE %d", ext.Size))
	}
	for _, kw := range []struct {
		on   bool
		name string
	}{{ext.EightBit, "8BITMIME"}, {ext.SMTPUTF8, "SMTPUTF8"}, {ext.DSN, "DSN"}, {ext.StartTLS, "STARTTLS"}} {
		if kw.on {
			offers = append(offers, kw.name)
		}
	}
	return daemon.Finding{What: "backend", Detail: fmt.Sprintf("%s (PROXY %s) answers; its EHLO offers %s", cfg.Backend, cfg.BackendProxyProtocol, strings.Join(offers, " "))}
}

// checkStore asks the running daemon how its store is; with no daemon, it
// opens a bolt file read-only, or asks Redis. It never makes a store.
func checkStore(cfg *config.Config) daemon.Finding {
	var st admin.Status
	err := admin.NewClient(cfg.AdminSocket()).Do("GET", "/v1/status", nil, &st)
	switch {
	case err == nil && st.StoreDown != nil:
		return daemon.Finding{What: "store", Level: daemon.Warn, Detail: fmt.Sprintf("%s: UNREACHABLE since %s (asked the running daemon): unknown hosts get 4xx", storeName(cfg), fmtTime(*st.StoreDown))}
	case err == nil:
		return daemon.Finding{What: "store", Detail: fmt.Sprintf("%s, through the running daemon: %d white, %d grey, %d black hosts, %d traps", storeName(cfg), st.Hosts["white"], st.Hosts["grey"], st.Hosts["black"], st.Traps)}
	case !errors.Is(err, admin.ErrNoDaemon):
		return daemon.Finding{What: "store", Level: daemon.Fail, Detail: fmt.Sprintf("the daemon on %s: %v", cfg.AdminSocket(), err)}
	}
	if cfg.Store == "" || cfg.Store == "bolt" {
		path := daemon.BoltPath(cfg)
		sum, err := bolt.Inspect(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return daemon.Finding{What: "store", Detail: path + ": none yet: moat run makes it"}
		case err != nil:
			return daemon.Finding{What: "store", Level: daemon.Fail, Detail: err.Error()}
		}
		return daemon.Finding{What: "store", Detail: fmt.Sprintf("%s (no daemon runs; read-only): %d white, %d grey, %d black hosts, %d triplets, %d traps",
			path, sum.Hosts[store.White], sum.Hosts[store.Grey], sum.Hosts[store.Black], sum.Triplets, sum.Traps)}
	}
	rs, err := redis.Open(cfg.Store, redis.Options{Prefix: cfg.Redis.Prefix, Timeout: cfg.Redis.Timeout.Duration, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return daemon.Finding{What: "store", Level: daemon.Fail, Detail: err.Error()}
	}
	defer rs.Close()
	if down, _ := rs.Down(); down {
		return daemon.Finding{What: "store", Level: daemon.Warn, Detail: storeName(cfg) + ": does not answer (no daemon runs): moat starts anyway, serves its lists, and answers unknown hosts 4xx until it does"}
	}
	return daemon.Finding{What: "store", Detail: storeName(cfg) + ": answers (no daemon runs)"}
}

// storeName names the store without a password.
func storeName(cfg *config.Config) string {
	if cfg.Store == "" || cfg.Store == "bolt" {
		return "bolt " + daemon.BoltPath(cfg)
	}
	if u, err := url.Parse(cfg.Store); err == nil {
		return u.Redacted()
	}
	return "redis"
}
