package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"moat/internal/config"
	"moat/internal/traps"
)

// serveBait serves the page that publishes the bait addresses of ts on
// ln, if any, until ctx is done.
func serveBait(ctx context.Context, ln net.Listener, cfg config.Bait, ts *traps.Set, log *slog.Logger) error {
	if ln == nil {
		return nil
	}
	b := ts.Bait()
	if b == nil {
		ln.Close()
		return errors.New("bait: no key loaded")
	}
	srv := &http.Server{
		Handler:           &traps.Page{Bait: b, Count: cfg.Count, TrustedProxies: cfg.TrustedProxies.Nets()},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       20 * time.Second,
		WriteTimeout:      20 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("bait: serve", "err", err.Error())
		}
	}()
	log.Info("bait page started", "listen", ln.Addr().String(), "domain", b.Domain())
	return nil
}
