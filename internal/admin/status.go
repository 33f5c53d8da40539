package admin

import (
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"moat/internal/bypass"
	"moat/internal/ledger"
	"moat/internal/store"
	"moat/internal/traps"
)

// Status is what "moat status" prints.
type Status struct {
	Running       bool             `json:"running"`
	Hosts         map[string]int   `json:"hosts"`          // per class
	Connections   int64            `json:"connections"`    // open now
	Open          map[string]int64 `json:"open,omitempty"` // open now by class; black: held by the tarpit
	TarpitHeld    int              `json:"tarpit_held"`    // connections held now
	TarpitSeconds float64          `json:"tarpit_seconds"` // held in total, ever
	TarpitRefused uint64           `json:"tarpit_refused"` // black connections closed at once: tarpit full
	Sessions      map[string]int64 `json:"sessions,omitempty"`
	Refused       map[string]int64 `json:"refused,omitempty"`
	Traps         int              `json:"traps"`
	TrapHits      int64            `json:"trap_hits"`
	TopTraps      []TrapHits       `json:"top_traps,omitempty"` // most hit traps, bait addresses included
	StoreErrors   int64            `json:"store_errors"`
	StoreDown     *time.Time       `json:"store_down_since,omitempty"` // a shared store (Redis) unreachable since
	Bypass        *Bypass          `json:"bypass,omitempty"`           // the kernel bypass; nil when off
	// Messages counts black hosts' messages by what the tarpit told
	// them: "dropped" (250), "deferred" (4xx), "refused" (5xx).
	Messages map[string]int64 `json:"tarpit_messages"`
	Mode     string           `json:"mode,omitempty"`  // the running daemon's: "enforce" or "observe"
	Would    map[string]int64 `json:"would,omitempty"` // observe mode: sessions since start by what enforce mode would have done
}

// ErrBypassOff answers questions about the kernel bypass when it is off.
var ErrBypassOff = errors.New("the kernel bypass is off (bypass.mode)")

// Bypass is the kernel bypass as the operator sees it: the table, the
// sizes of its sets, and what is wrong with it.
type Bypass struct {
	Table string `json:"table"` // "inet moat"
	bypass.Sizes
	Problem string `json:"problem,omitempty"` // "" when the table and moat's rules are in place
}

// TrapHits is one trap's hit count.
type TrapHits struct {
	Addr string `json:"addr"`
	Hits int64  `json:"hits"`
}

// Status counts hosts and adds the daemon's live counters.
func (s *Service) Status() (Status, error) {
	st := Status{Hosts: map[string]int{"white": 0, "grey": 0, "black": 0}, Messages: map[string]int64{}}
	// The live figures come first: when a shared store is down the
	// operator most needs to see that, and the counts it cannot give.
	if d, ok := s.Eng.Store().(interface{ Down() (bool, time.Time) }); ok {
		if down, since := d.Down(); down {
			st.StoreDown = &since
		}
	}
	if err := s.storeStatus(&st); err != nil && st.StoreDown == nil {
		return st, err
	}
	if s.Bypass != nil {
		b := s.Bypass()
		st.Bypass = &b
	}
	if s.Live != nil {
		l := s.Live()
		st.Running = true
		st.Connections, st.Open, st.TarpitHeld, st.TarpitRefused = l.Connections, l.Open, l.TarpitHeld, l.TarpitRefused
		st.Sessions, st.Refused, st.StoreErrors = l.Sessions, l.Refused, l.StoreErrors
		st.Mode, st.Would = l.Mode, l.Would
		// The stored total has whole seconds of finished sessions;
		// add what the connections held now have cost so far.
		st.TarpitSeconds += l.TarpitSeconds
	}
	return st, nil
}

// storeStatus fills in what the store knows: counts per class, tarpit
// seconds, traps.
func (s *Service) storeStatus(st *Status) error {
	if err := s.Eng.Store().Hosts(func(h store.Host) bool {
		st.Hosts[h.Class.String()]++
		return true
	}); err != nil {
		return err
	}
	counters, err := s.Eng.Store().Counters()
	if err != nil {
		return err
	}
	st.TarpitSeconds = float64(counters[ledger.HeldCounter])
	for _, t := range []ledger.Told{ledger.Dropped, ledger.Deferred, ledger.Refused} {
		st.Messages[t.String()] = counters[ledger.Counter(t)]
	}
	for k, v := range counters {
		if strings.HasPrefix(k, hitPrefix) {
			st.TrapHits += v
		}
	}
	tl, err := s.Eng.Traps().List()
	if err != nil {
		return err
	}
	st.Traps = len(tl)
	st.TopTraps = topTraps(counters, 10)
	return nil
}

// hitPrefix starts the name of every trap's hit counter.
var hitPrefix = traps.HitCounter("")

// topTraps returns the n traps with the most hits, from the counters.
func topTraps(counters map[string]int64, n int) []TrapHits {
	var out []TrapHits
	for k, v := range counters {
		if a, ok := strings.CutPrefix(k, hitPrefix); ok && v > 0 {
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

func (s *Service) statusRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Status()
		reply(w, st, err)
	})
	mux.HandleFunc("GET /v1/bypass", func(w http.ResponseWriter, r *http.Request) {
		if s.Bypass == nil {
			reply(w, nil, badRequest{ErrBypassOff})
			return
		}
		reply(w, s.Bypass(), nil)
	})
}
