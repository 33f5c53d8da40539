package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/traps"
)

// MineResult says what a batch of log observations did.
type MineResult struct {
	Observations int `json:"observations"`
	Candidates   int `json:"candidates"` // candidates now, in all
}

// maxMineBatch bounds one request of "moat traps mine"; the command sends
// larger files in several.
const maxMineBatch = 10000

var errNoMiner = errors.New("trap mining is not set up in this moat")

// trapAddress refuses, as a bad request, an address no trap can have,
// before the trap set or the miner sees it: what fails after that is the
// store's doing or the configuration's, and is answered as such.
func trapAddress(addr string) error {
	if n, err := smtp.Normalize(addr); err != nil || smtp.Domain(n) == "" {
		return badRequest{fmt.Errorf("traps: %q is not an address (want local@domain)", addr)}
	}
	return nil
}

// AddTrap adds a trap address and returns it as stored (normalised).
func (s *Service) AddTrap(addr string) (string, error) {
	if err := trapAddress(addr); err != nil {
		return "", err
	}
	return s.Eng.Traps().Add(addr)
}

// DelTrap removes a trap added with AddTrap. A trap from the configuration
// is removed there, not here: asking is a bad request.
func (s *Service) DelTrap(addr string) (string, error) {
	if err := trapAddress(addr); err != nil {
		return "", err
	}
	n, err := s.Eng.Traps().Del(addr)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return n, notFound{fmt.Errorf("traps: %s is not a trap (see 'moat traps list')", addr)}
	case err != nil && s.fromConfig(addr):
		return n, badRequest{err}
	}
	return n, err
}

// fromConfig says whether addr is a trap from traps.addresses.
func (s *Service) fromConfig(addr string) bool {
	n, _ := smtp.Normalize(addr)
	tl, _ := s.Eng.Traps().List()
	return slices.ContainsFunc(tl, func(t traps.Trap) bool { return t.Addr == n && t.Source == traps.FromConfig })
}

// Candidates lists the addresses that qualify as traps.
func (s *Service) Candidates() ([]traps.Evidence, error) {
	if s.Miner == nil {
		return nil, errNoMiner
	}
	cs, err := s.Miner.Candidates()
	if cs == nil && err == nil {
		cs = []traps.Evidence{}
	}
	return cs, err
}

// Promote probes the backend for addr and makes it a trap if the backend
// has no such mailbox.
func (s *Service) Promote(ctx context.Context, addr string) (traps.Promotion, error) {
	if err := trapAddress(addr); err != nil {
		return traps.Promotion{}, err
	}
	if s.Miner == nil {
		return traps.Promotion{}, errNoMiner
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return s.Miner.Promote(ctx, addr)
}

// Mine records rejections found in a mail log as evidence.
func (s *Service) Mine(obs []traps.Observation) (MineResult, error) {
	if len(obs) > maxMineBatch {
		return MineResult{}, badRequest{fmt.Errorf("%d observations in one request: send at most %d", len(obs), maxMineBatch)}
	}
	if s.Miner == nil {
		return MineResult{}, errNoMiner
	}
	for _, o := range obs {
		if err := s.Miner.Targeted(o.Client, o.Addr, traps.OriginLog); err != nil {
			return MineResult{}, err
		}
	}
	cs, err := s.Miner.Candidates()
	return MineResult{Observations: len(obs), Candidates: len(cs)}, err
}

func (s *Service) trapRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/traps", func(w http.ResponseWriter, r *http.Request) {
		tl, err := s.Eng.Traps().List()
		reply(w, tl, err)
	})
	serveJSON(mux, "POST /v1/traps", 64<<10, func(_ *http.Request, req struct{ Addr string }) (any, error) {
		n, err := s.AddTrap(req.Addr)
		return map[string]string{"added": n}, err
	})
	mux.HandleFunc("DELETE /v1/traps/{addr}", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.DelTrap(r.PathValue("addr"))
		reply(w, map[string]string{"deleted": n}, err)
	})
	mux.HandleFunc("GET /v1/traps/candidates", func(w http.ResponseWriter, r *http.Request) {
		cs, err := s.Candidates()
		reply(w, cs, err)
	})
	serveJSON(mux, "POST /v1/traps/promote", 64<<10, func(r *http.Request, req struct{ Addr string }) (any, error) {
		return s.Promote(r.Context(), req.Addr)
	})
	serveJSON(mux, "POST /v1/traps/mine", 8<<20, func(_ *http.Request, req struct{ Observations []traps.Observation }) (any, error) {
		return s.Mine(req.Observations)
	})
}
