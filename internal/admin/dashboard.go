package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"net/netip"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"moat/internal/ledger"
	"moat/internal/metrics"
	"moat/internal/prefix"
)

// The dashboard is a static page whose script asks the API for its data
// with the operator's token; everything it needs is in the binary.
//
//go:embed dashboard
var dashboardFS embed.FS

// Dashboard is everything the dashboard page shows but a host's lookup,
// in one answer.
type Dashboard struct {
	Status
	Chart      metrics.Chart     `json:"chart"`
	Tarpit     TarpitCost        `json:"tarpit"`
	TopHosts   []HeldBy          `json:"top_hosts"` // the hosts that lost the most time in the tarpit
	TopNets    []HeldBy          `json:"top_nets"`  // the same by /24 (IPv4) or /64 (IPv6)
	TrapHits   []metrics.TrapHit `json:"trap_hits"` // the last sessions that named a trap, newest first
	PassDelays PassDelays        `json:"pass_delays"`
}

// TarpitCost is what the tarpit costs the bots.
type TarpitCost struct {
	Held         int     `json:"held"` // connections held now
	Max          int     `json:"max"`  // tarpit.max_conns
	SecondsToday float64 `json:"seconds_today"`
	SecondsTotal float64 `json:"seconds_total"`
}

// HeldBy is a host or network and the seconds it spent in the tarpit.
type HeldBy struct {
	Target  string `json:"target"`
	Seconds int64  `json:"seconds"`
	Hosts   int    `json:"hosts,omitempty"` // of a network: how many of its hosts were held
}

// PassDelays is the distribution of the time legitimate senders waited
// from their first attempt to the retry that passed, since start.
type PassDelays struct {
	Buckets []metrics.Bucket `json:"buckets"` // cumulative
	Count   uint64           `json:"count"`
	Sum     float64          `json:"sum"` // seconds
}

// topN is how many hosts and networks the dashboard lists.
const topN = 10

// Dashboard gathers the dashboard's figures: the status, the metrics'
// history and the store's tarpit records.
func (s *Service) Dashboard() (Dashboard, error) {
	st, err := s.Status()
	d := Dashboard{Status: st, Tarpit: TarpitCost{Held: st.TarpitHeld, SecondsTotal: st.TarpitSeconds}}
	if err != nil {
		return d, err
	}
	if s.Live != nil {
		l := s.Live()
		d.Tarpit.Max = l.TarpitMax
		// The day's counter has the finished connections; those held
		// now are counted as today's.
		d.Tarpit.SecondsToday = l.TarpitSeconds
	}
	counters, err := s.Eng.Store().Counters()
	if err != nil {
		return d, err
	}
	d.Tarpit.SecondsToday += float64(counters[ledger.HeldDayCounter(time.Now())])
	if d.TopHosts, d.TopNets, err = s.topHeld(); err != nil {
		return d, err
	}
	if m := s.Metrics; m != nil {
		d.Chart = m.Timeline.Chart(1 << 30)
		d.TrapHits = m.Traps.Recent()
		d.PassDelays.Buckets, d.PassDelays.Count, d.PassDelays.Sum = m.PassDelays()
	}
	return d, nil
}

// topHeld ranks the hosts, and their networks, by the seconds they spent
// in the tarpit (the records the ledger keeps for a month).
func (s *Service) topHeld() (hosts, nets []HeldBy, err error) {
	if s.Ledger == nil {
		return nil, nil, nil
	}
	byNet := map[netip.Prefix]*HeldBy{}
	err = s.Ledger.EachHeld(func(a netip.Addr, secs int64) bool {
		hosts = append(hosts, HeldBy{Target: a.String(), Seconds: secs})
		n := prefix.Fold(a, 24, 64)
		if byNet[n] == nil {
			byNet[n] = &HeldBy{Target: n.String()}
		}
		byNet[n].Seconds += secs
		byNet[n].Hosts++
		return true
	})
	for _, n := range byNet {
		nets = append(nets, *n)
	}
	return top(hosts), top(nets), err
}

// top sorts by seconds, most first, and keeps topN.
func top(hs []HeldBy) []HeldBy {
	sort.Slice(hs, func(i, j int) bool {
		if hs[i].Seconds != hs[j].Seconds {
			return hs[i].Seconds > hs[j].Seconds
		}
		return hs[i].Target < hs[j].Target
	})
	return hs[:min(len(hs), topN)]
}

func (s *Service) dashboardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/dashboard", func(w http.ResponseWriter, r *http.Request) {
		d, err := s.Dashboard()
		reply(w, d, err)
	})
	if s.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}))
	}
}

// dashboardPage serves the page's files. They are the same for everyone
// and hold no data, so they need no token: the browser could not send
// one when the operator opens the page.
func dashboardPage() http.Handler {
	files, err := fs.Sub(dashboardFS, "dashboard")
	if err != nil {
		panic(err) // the embedded directory is part of the build
	}
	return http.StripPrefix("/dashboard/", http.FileServerFS(files))
}
