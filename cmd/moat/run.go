package main

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"moat/internal/config"
	"moat/internal/daemon"
	"moat/internal/logsink"
)

func runCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "run the proxy (SIGHUP or 'moat reload' reads the configuration again; SIGTERM drains and stops)",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return run(*cfgPath) },
	}
}

// run runs the daemon of the configuration at path until SIGINT or
// SIGTERM.
func run(path string) error {
	// A SIGHUP before the daemon takes it over (Run reloads on it) must
	// not end moat, as its default action would: the file is being read.
	signal.Ignore(syscall.SIGHUP)
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	sink, err := logsink.Open(daemon.LogOptions(cfg))
	if err != nil {
		return err
	}
	defer sink.Close()
	d, err := daemon.New(cfg, sink.Logger)
	if err != nil {
		return err
	}
	defer d.Close()
	d.ConfigPath, d.Level = path, sink.Level
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return d.Run(ctx)
}
