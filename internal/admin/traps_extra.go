package admin

// The operator's side of trap mining: candidates, promotion with a backend
// probe, and evidence from mail logs read by "moat traps mine".

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"moat/internal/traps"
)

// TrapHits is one trap's hit count.
type TrapHits struct {
	Addr string `json:"addr"`
	Hits int64  `json:"hits"`
}

// topTraps returns the n traps with the most hits, from the counters.
func topTraps(counters map[string]int64, n int) []TrapHits {
	var out []TrapHits
	for k, v := range counters {
		if a, ok := strings.CutPrefix(k, "trap_hits:"); ok && v > 0 {
			out = append(out, TrapHits{Addr: a, Hits: v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Hits != out[j].Hits {
			return out[i].Hits > out[j].Hits
		}
		return out[i].Addr < out[j].Addr
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// MineResult says what a batch of log observations did.
type MineResult struct {
	Observations int `json:"observations"`
	Candidates   int `json:"candidates"` // candidates now, in all
}

var errNoMiner = errors.New("trap mining is not set up in this moat")

// Candidates lists the addresses that qualify as traps.
func (s *Service) Candidates() ([]traps.Evidence, error) {
	if s.Miner == nil {
		return nil, errNoMiner
	}
	return s.Miner.Candidates()
}

// Promote probes the backend for addr and makes it a trap if the backend
// has no such mailbox.
func (s *Service) Promote(ctx context.Context, addr string) (traps.Promotion, error) {
	if s.Miner == nil {
		return traps.Promotion{}, errNoMiner
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return s.Miner.Promote(ctx, addr)
}

// Mine records rejections found in a mail log as evidence.
func (s *Service) Mine(obs []traps.Observation) (MineResult, error) {
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

// maxMineBatch bounds one request of "moat traps mine"; the command sends
// larger files in several.
const maxMineBatch = 10000

func (s *Service) trapsExtraRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/traps/candidates", func(w http.ResponseWriter, r *http.Request) {
		cs, err := s.Candidates()
		if cs == nil && err == nil {
			cs = []traps.Evidence{}
		}
		reply(w, cs, err)
	})
	mux.HandleFunc("POST /v1/traps/promote", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Addr string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, nil, badRequest{err})
			return
		}
		p, err := s.Promote(r.Context(), req.Addr)
		reply(w, p, err)
	})
	mux.HandleFunc("POST /v1/traps/mine", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Observations []traps.Observation }
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&req); err != nil {
			reply(w, nil, badRequest{err})
			return
		}
		if len(req.Observations) > maxMineBatch {
			reply(w, nil, badRequest{errors.New("too many observations in one request")})
			return
		}
		res, err := s.Mine(req.Observations)
		reply(w, res, err)
	})
}
