package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"moat/internal/admin"
	"moat/internal/bypass"
	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/config"
)

// startBypass puts the kernel bypass in step with the engine and keeps it
// so until ctx ends, when bypass.mode is "nftables". It returns the mirror
// (nil when off), whose LogLine reads the mail server's log for evidence
// about the hosts moat no longer sees. With the bypass off, a table an earlier run left is
// deleted, so that white hosts stop going past a moat that was told not to
// let them.
func startBypass(ctx context.Context, cfg *config.Config, eng *classify.Engine, log *slog.Logger) (*bypass.Mirror, error) {
	b := cfg.Bypass
	if b.Mode != "nftables" {
		// Without root or nf_tables there can be no table to retire.
		if gone, err := bypass.Retire(b.Table); err != nil {
			log.Debug("bypass: off; looking for a table to retire", "err", err.Error())
		} else if gone {
			log.Info("bypass: off: deleted the table an earlier run left; white hosts reach moat again", "table", "inet "+b.Table)
		}
		return nil, nil
	}
	t, err := openBypass(cfg)
	if err != nil {
		return nil, err
	}
	m := bypass.NewMirror(t, eng, clock.Real{}, log)
	m.Interval = b.Sync.Duration
	if err := m.Start(); err != nil {
		return nil, fmt.Errorf("%w (bypass.mode \"nftables\" needs root and nf_tables in the kernel; set bypass.mode = \"off\" to run without it)", err)
	}
	go m.Run(ctx)
	sz, _ := t.Count()
	log.Info("bypass: white hosts go to the mail server in the kernel", "table", t.Name(), "bypass_port", b.Port,
		"hosts_v4", sz.Hosts4, "hosts_v6", sz.Hosts6, "nets_v4", sz.Nets4, "nets_v6", sz.Nets6)
	if len(cfg.Traps.Follow) == 0 {
		log.Warn("bypass: traps.follow names no mail log: moat will not see white hosts write to traps, nor renew the white time of hosts that keep sending")
	}
	return m, nil
}

func openBypass(cfg *config.Config) (*bypass.Table, error) {
	b := cfg.Bypass
	listen, err := b.ListenAddr(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("config: listen: %w", err)
	}
	return bypass.Open(bypass.Config{Table: b.Table, Listen: listen, Port: uint16(b.Port)}, 0)
}

// bypassStatus reads the kernel's table for "moat status" and "moat hosts
// list", from the daemon or, when none runs, from the command line (the
// table outlives moat). nil when the bypass is off.
func bypassStatus(cfg *config.Config) func() admin.Bypass {
	if cfg.Bypass.Mode != "nftables" {
		return nil
	}
	return func() admin.Bypass {
		v := admin.Bypass{Table: "inet " + cfg.Bypass.Table}
		t, err := openBypass(cfg)
		if err == nil {
			err = t.Check()
		}
		if err == nil {
			v.Sizes, err = t.Count()
		}
		if err != nil {
			v.Problem = err.Error()
		}
		return v
	}
}
