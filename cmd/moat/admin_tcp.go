package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"moat/internal/admin"
	"moat/internal/config"
)

// startAdminTCP opens the TCP admin listener when admin.listen is set. It
// never opens one without a token: a missing, unreadable, shared or short
// token file stops start-up.
func startAdminTCP(ctx context.Context, cfg *config.Config, svc *admin.Service, log *slog.Logger) error {
	if cfg.Admin.Listen == "" {
		return nil
	}
	token, err := admin.LoadToken(cfg.Admin.TokenFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
	}
	go func() {
		if err := svc.ServeTCP(ctx, ln, token); err != nil {
			log.Error("admin: TCP listener stopped", "listen", cfg.Admin.Listen, "err", err.Error())
		}
	}()
	log.Info("admin: TCP listener", "listen", ln.Addr().String())
	return nil
}
