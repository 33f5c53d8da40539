package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	s.hostRoutes(mux)
	s.trapRoutes(mux)
	s.feedbackRoutes(mux)
	s.statusRoutes(mux)
	s.exportRoutes(mux)
	s.reloadRoutes(mux)
	s.dashboardRoutes(mux)
	return mux
}

// Listen opens the admin socket at path, owner-only. A stale socket left
// by a crashed daemon is removed; a live one means another moat runs.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin: %s: another moat is running with this data_dir (stop it first)", path)
	}
	os.Remove(path)
	// The umask makes the socket owner-only from its first moment, not
	// only after a chmod.
	ln, err := listenUnixPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: chmod %s: %w", path, err)
	}
	return ln, nil
}

// Serve serves the API on ln until ctx is done.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	return serveHTTP(ctx, ln, &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second})
}

// serveHTTP runs srv on ln until ctx is done, then shuts it down gently.
func serveHTTP(ctx context.Context, ln net.Listener, srv *http.Server) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
