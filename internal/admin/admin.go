// Package admin is the operator's way in: a small JSON API that the moat
// command line talks to, served on a unix socket in data_dir that only its
// owner may use (mode 0600).
//
// The same Service answers when no daemon runs: the command line then opens
// the store itself, so an operator can list and change hosts with moat
// stopped. Changes are durable before the API answers.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"moat/internal/classify"
	"moat/internal/prefix"
	"moat/internal/store"
	"moat/internal/traps"
)

// HostView is one host as the operator sees it.
type HostView struct {
	IP        string     `json:"ip"`
	Class     string     `json:"class"`
	Reason    string     `json:"reason"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
	Expires   *time.Time `json:"expires,omitempty"`
	Held      int64      `json:"tarpit_seconds,omitempty"` // seconds this host spent in the tarpit
}

// Status is what "moat status" prints.
type Status struct {
	Running       bool             `json:"running"`
	Hosts         map[string]int   `json:"hosts"`          // per class
	Connections   int64            `json:"connections"`    // open now
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
}

// Live is what a running daemon adds to the status.
type Live struct {
	Connections   int64
	TarpitHeld    int
	TarpitSeconds float64 // of connections held now and finished since start
	TarpitRefused uint64
	Sessions      map[string]int64
	Refused       map[string]int64
	StoreErrors   int64
}

// Service carries out operator requests.
type Service struct {
	Eng   *classify.Engine
	Traps *traps.Set
	Miner *traps.Miner // trap mining; nil: not set up
	Live  func() Live  // nil when no daemon runs
}

// ParseTarget accepts an address or a CIDR.
func ParseTarget(s string) (netip.Prefix, error) {
	p, err := prefix.Parse(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	return p, nil
}

// Hosts lists hosts, optionally of one class, sorted by address.
func (s *Service) Hosts(class string) ([]HostView, error) {
	var want *store.Class
	if class != "" {
		c, err := store.ParseClass(class)
		if err != nil {
			return nil, err
		}
		want = &c
	}
	var hosts []store.Host
	err := s.Eng.Store().Hosts(func(h store.Host) bool {
		if want == nil || h.Class == *want {
			hosts = append(hosts, h)
		}
		return true
	})
	sort.Slice(hosts, func(i, j int) bool {
		a, b := hosts[i].Prefix, hosts[j].Prefix
		if a.Addr() != b.Addr() {
			return a.Addr().Less(b.Addr())
		}
		return a.Bits() < b.Bits()
	})
	var out []HostView
	for _, h := range hosts {
		v := view(h)
		if h.Prefix.IsSingleIP() {
			v.Held = s.Eng.HeldSeconds(h.Prefix.Addr())
		}
		out = append(out, v)
	}
	return out, err
}

func view(h store.Host) HostView {
	ip := h.Prefix.String()
	if h.Prefix.IsSingleIP() {
		ip = h.Prefix.Addr().String()
	}
	v := HostView{IP: ip, Class: h.Class.String(), Reason: h.Reason, FirstSeen: h.First, LastSeen: h.Last}
	if !h.Expires.IsZero() {
		e := h.Expires
		v.Expires = &e
	}
	return v
}

// Widest networks the operator may list without saying he means it: a
// typo like 0.0.0.0/0 or 2001:db8::/3 would otherwise blacklist (or
// whitelist) a good part of the Internet.
const (
	widestV4 = 16
	widestV6 = 32
)

// SetClass makes target white or black, or forgets it for grey, and
// returns the network it stored (host bits cleared: 192.0.2.7/24 is
// 192.0.2.0/24). A network wider than a /16 (IPv4) or a /32 (IPv6) is
// refused unless force is set.
func (s *Service) SetClass(target, class string, force bool) (netip.Prefix, error) {
	p, err := ParseTarget(target)
	if err != nil {
		return p, err
	}
	c, err := store.ParseClass(class)
	if err != nil {
		return p, err
	}
	if err := checkWidth(p, c, force); err != nil {
		return p, err
	}
	return p, s.Eng.SetClass(p, c, "operator")
}

// checkWidth refuses a network too wide to be meant, unless forced.
func checkWidth(p netip.Prefix, c store.Class, force bool) error {
	widest := widestV4
	if p.Addr().Is6() {
		widest = widestV6
	}
	if force || c == store.Grey || p.Bits() >= widest {
		return nil
	}
	return badRequest{fmt.Errorf("%s covers more than a /%d: making it %s needs --force (\"force\": true in the API) if you mean it", p, widest, c)}
}

// Forget removes what moat remembers of target.
func (s *Service) Forget(target string) error {
	p, err := ParseTarget(target)
	if err != nil {
		return err
	}
	if err := s.Eng.Forget(p); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s: moat remembers nothing of it", target)
		}
		return err
	}
	return nil
}

// Status counts hosts and adds the daemon's live counters.
func (s *Service) Status() (Status, error) {
	st := Status{Hosts: map[string]int{"white": 0, "grey": 0, "black": 0}}
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
	if s.Live != nil {
		l := s.Live()
		st.Running = true
		st.Connections, st.TarpitHeld, st.TarpitRefused = l.Connections, l.TarpitHeld, l.TarpitRefused
		st.Sessions, st.Refused, st.StoreErrors = l.Sessions, l.Refused, l.StoreErrors
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
	st.TarpitSeconds = float64(counters["tarpit_seconds"])
	for k, v := range counters {
		if strings.HasPrefix(k, "trap_hits:") {
			st.TrapHits += v
		}
	}
	tl, err := s.Traps.List()
	if err != nil {
		return err
	}
	st.Traps = len(tl)
	st.TopTraps = topTraps(counters, 10)
	return nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/hosts", func(w http.ResponseWriter, r *http.Request) {
		hs, err := s.Hosts(r.URL.Query().Get("class"))
		reply(w, hs, err)
	})
	mux.HandleFunc("POST /v1/hosts", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			IP, Class string
			Force     bool
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, nil, badRequest{err})
			return
		}
		p, err := s.SetClass(req.IP, req.Class, req.Force)
		reply(w, map[string]string{"ip": req.IP, "class": req.Class, "stored": p.String()}, err)
	})
	mux.HandleFunc("DELETE /v1/hosts/{ip...}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"forgotten": r.PathValue("ip")}, s.Forget(r.PathValue("ip")))
	})
	mux.HandleFunc("GET /v1/traps", func(w http.ResponseWriter, r *http.Request) {
		tl, err := s.Traps.List()
		reply(w, tl, err)
	})
	mux.HandleFunc("POST /v1/traps", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Addr string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, nil, badRequest{err})
			return
		}
		n, err := s.Traps.Add(req.Addr)
		reply(w, map[string]string{"added": n}, err)
	})
	mux.HandleFunc("DELETE /v1/traps/{addr}", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.Traps.Del(r.PathValue("addr"))
		reply(w, map[string]string{"deleted": n}, err)
	})
	s.feedbackRoutes(mux) // feedback.go
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Status()
		reply(w, st, err)
	})
	s.trapsExtraRoutes(mux)
	s.exportRoutes(mux)
	return mux
}

type badRequest struct{ error }

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusInternalServerError
		var br badRequest
		if errors.As(err, &br) || !errors.Is(err, store.ErrUnavailable) {
			code = http.StatusBadRequest
		}
		w.WriteHeader(code)
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
