package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"moat/internal/admin"
	"moat/internal/config"
	"moat/internal/server"
)

// live is what the running server adds to "moat status".
func live(srv *server.Server) func() admin.Live {
	return func() admin.Live {
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
	}
}

// serveAdminTCP opens the TCP admin listener when admin.listen is set. It
// never opens one without a token: a missing, unreadable, shared or short
// token file stops start-up.
func serveAdminTCP(ctx context.Context, cfg config.Admin, svc *admin.Service, log *slog.Logger) error {
	addr := cfg.Listen
	if addr == "" {
		return nil
	}
	token, err := admin.LoadToken(cfg.TokenFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin.listen %s: %w", addr, err)
	}
	go func() {
		if err := svc.ServeTCP(ctx, ln, token); err != nil {
			log.Error("admin: TCP listener stopped", "listen", addr, "err", err.Error())
		}
	}()
	log.Info("admin: TCP listener", "listen", ln.Addr().String())
	return nil
}
