package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"moat/internal/classify"
	"moat/internal/metrics"
	"moat/internal/store"
)

// classifyHooks feed m from the engine's evidence.
func classifyHooks(m *metrics.Metrics) classify.Hooks {
	return classify.Hooks{TrapHit: m.TrapHit, Greylist: m.Greylist, DNSBL: m.DNSBL, Feedback: m.Feedback}
}

// liveMetrics reads, at each scrape, the figures the server and the
// tarpit keep themselves.
func (d *Daemon) liveMetrics() metrics.Live {
	l := metrics.Live{StoreUp: true}
	if d.Server != nil {
		s := d.Server.Stats()
		for c := store.Grey; c <= store.Black; c++ {
			l.Open[c] = s.Open[c.String()]
		}
		l.Refused = s.Refused
		l.TarpitMax, l.TarpitSeconds = s.Tarpit.Max, s.Tarpit.HeldSeconds
		l.TarpitDropped, l.TarpitDeferred, l.TarpitRefused = s.Tarpit.Dropped, s.Tarpit.Deferred, s.Tarpit.Refused5xx
		l.Observe, l.Would = s.Observe, s.Would
	}
	if s, ok := d.Store.(interface{ Down() (bool, time.Time) }); ok {
		down, _ := s.Down()
		l.StoreUp = !down
	}
	return l
}

// listenIfSet opens a TCP listener on addr, the value of key, when it is
// set (nil when not); an error names the key.
func listenIfSet(key, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, addr, err)
	}
	return ln, nil
}

// serveMetrics serves /metrics, without a token, on ln, if any, until ctx
// is done.
func serveMetrics(ctx context.Context, ln net.Listener, m *metrics.Metrics, log *slog.Logger) {
	if ln == nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("metrics: listener stopped", "listen", ln.Addr().String(), "err", err.Error())
		}
	}()
	log.Info("metrics: listener without a token", "listen", ln.Addr().String())
}
