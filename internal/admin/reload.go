package admin

import (
	"errors"
	"net/http"
)

// Reloaded is what a reload did: the keys it applied and the changed keys
// that apply only after a restart.
type Reloaded struct {
	Config  string   `json:"config"`            // the file read; "" for the built-in defaults
	Applied []string `json:"applied,omitempty"` // changed keys now in force
	Restart []string `json:"restart,omitempty"` // changed keys that need a restart
}

func (s *Service) reloadRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if s.Reload == nil {
			reply(w, nil, errNotRunning)
			return
		}
		res, err := s.Reload()
		if err != nil {
			// A refused configuration: what to fix is in the
			// file, and asking again will not help until it is.
			err = badRequest{err}
		}
		reply(w, res, err)
	})
}

// errNotRunning answers what only a running daemon can do.
var errNotRunning = errors.New("moat is not running: nothing to reload (moat check -c FILE checks a configuration)")
