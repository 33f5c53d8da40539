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
// traps, feedback, status, export, reload, dashboard (the page, its
// figures and /metrics). The TCP listener (tcp.go) serves the same API
// behind a token, and the dashboard's page without one. A refusal says
// what happened by its status: 400 for a request that is wrong, 404 for a
// host or trap moat knows nothing of, 503 when the store cannot be
// reached, 500 otherwise; its body is {"error": "..."} with the message
// the command line prints.
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"moat/internal/classify"
	"moat/internal/ledger"
	"moat/internal/metrics"
	"moat/internal/store"
	"moat/internal/traps"
)

// Service carries out operator requests.
type Service struct {
	Eng    *classify.Engine // its trap set is the one the trap routes change
	Miner  *traps.Miner     // trap mining; nil: not set up
	Ledger *ledger.Ledger   // what black hosts' messages were told; nil: not kept
	Live   func() Live      // nil when no daemon runs

	// Bypass reads the kernel bypass (status.go); nil when bypass.mode
	// is off.
	Bypass func() Bypass
	// Reload reads the configuration again and applies it; nil when no
	// daemon runs.
	Reload func() (Reloaded, error)

	// Metrics is served at /metrics and feeds the dashboard; nil when
	// no daemon runs.
	Metrics *metrics.Metrics
}

// Live is what a running daemon adds to the status.
type Live struct {
	Connections   int64
	Open          map[string]int64 // by class; black: held by the tarpit
	TarpitHeld    int
	TarpitMax     int
	TarpitSeconds float64 // of connections held now and finished since start
	TarpitRefused uint64
	Sessions      map[string]int64
	Refused       map[string]int64
	StoreErrors   int64
	Mode          string           // "enforce" or "observe"
	Would         map[string]int64 // observe mode: sessions by what enforce mode would have done
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
