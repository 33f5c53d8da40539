package daemon

import (
	"context"
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
			Open:          s.Open,
			TarpitHeld:    s.Tarpit.Held,
			TarpitMax:     s.Tarpit.Max,
			TarpitSeconds: srv.HeldNow(),
			TarpitRefused: uint64(s.Refused["tarpit_full"]),
			Sessions:      s.Sessions,
			Refused:       s.Refused,
			StoreErrors:   s.StoreErrors,
			Mode:          map[bool]string{false: "enforce", true: "observe"}[s.Observe],
			Would:         s.Would,
		}
	}
}

// listenAdminTCP opens the TCP admin listener when admin.listen is set
// (nil when not), with its token. It never opens one without a token: a
// missing, unreadable, shared or short token file stops start-up.
func listenAdminTCP(cfg config.Admin) (net.Listener, string, error) {
	if cfg.Listen == "" {
		return nil, "", nil
	}
	token, err := admin.LoadToken(cfg.TokenFile)
	if err != nil {
		return nil, "", err
	}
	ln, err := listenIfSet("admin.listen", cfg.Listen)
	return ln, token, err
}

// serveAdminTCP serves the API on ln, if any, until ctx is done.
func serveAdminTCP(ctx context.Context, ln net.Listener, token string, svc *admin.Service, log *slog.Logger) {
	if ln == nil {
		return
	}
	go func() {
		if err := svc.ServeTCP(ctx, ln, token); err != nil {
			log.Error("admin: TCP listener stopped", "listen", ln.Addr().String(), "err", err.Error())
		}
	}()
	log.Info("admin: TCP listener", "listen", ln.Addr().String())
}
