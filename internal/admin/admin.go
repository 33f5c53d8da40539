// Package admin is the operator's way in: a small JSON API that the moat
// command line talks to, served on a unix socket in data_dir that only its
// owner may use (mode 0600), and on a token-guarded TCP port if asked.
//
// The same Service answers when no daemon runs: the command line then opens
// the store itself and serves its requests in-process (LocalClient), so an
// operator can list and change hosts with moat stopped. Changes are durable
// before the API answers.
//
// Routes are grouped by noun, each in the file named for it: hosts,
// traps, feedback, status, export. A refusal says what happened by its
// status: 400 for a request that is wrong, 404 for a host or trap moat
// knows nothing of, 503 when the store cannot be reached, 500 otherwise;
// its body is {"error": "..."} with the message the command line prints.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"moat/internal/classify"
	"moat/internal/store"
	"moat/internal/traps"
)

// Service carries out operator requests.
type Service struct {
	Eng   *classify.Engine // its trap set is the one the trap routes change
	Miner *traps.Miner     // trap mining; nil: not set up
	Live  func() Live      // nil when no daemon runs
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	s.hostRoutes(mux)
	s.trapRoutes(mux)
	s.feedbackRoutes(mux)
	s.statusRoutes(mux)
	s.exportRoutes(mux)
	return mux
}

// badRequest is a request that is wrong as sent: sending it again will
// not help (400).
type badRequest struct{ error }

func (e badRequest) Unwrap() error { return e.error }

// notFound names a host or trap moat knows nothing of (404).
type notFound struct{ error }

func (e notFound) Unwrap() error { return e.error }

// statusOf is the HTTP status that says what happened to a request that
// failed with err. An unreachable store comes first: whatever else went
// wrong, trying again later may work.
func statusOf(err error) int {
	var br badRequest
	var nf notFound
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.As(err, &nf):
		return http.StatusNotFound
	case errors.As(err, &br):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// serveJSON serves pattern with fn, which gets the request's JSON body
// (at most limit bytes) decoded into a T and returns the answer. A body
// that does not decode is a bad request.
func serveJSON[T any](mux *http.ServeMux, pattern string, limit int64, fn func(r *http.Request, body T) (any, error)) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var body T
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit)).Decode(&body); err != nil {
			reply(w, nil, badRequest{fmt.Errorf("request body: %w", err)})
			return
		}
		v, err := fn(r, body)
		reply(w, v, err)
	})
}

// reply writes v as the JSON answer, or err with the status that says
// what happened.
func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(statusOf(err))
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(v)
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
