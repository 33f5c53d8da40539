package main

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"moat/internal/config"
	"moat/internal/daemon"
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

// run runs the daemon until SIGINT or SIGTERM.
func run(cfg *config.Config) error {
	d, err := daemon.New(cfg, daemon.NewLogger(cfg))
	if err != nil {
		return err
	}
	defer d.Close()
	d.Version = version
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return d.Run(ctx)
}
