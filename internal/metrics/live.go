package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"moat/internal/store"
)

// Live are the figures the parts keep themselves, read at every scrape
// (Options.Live), so that counting them costs the hot paths nothing more.
type Live struct {
	Open    [3]int64         // connections open now, by store.Class; black: held by the tarpit
	Refused map[string]int64 // connections closed at once, by cause (max_conns, max_conns_per_ip, tarpit_full)

	TarpitMax     int     // tarpit.max_conns
	TarpitSeconds float64 // seconds held since start, connections held now included
	// Messages whose DATA ended in the tarpit, by the reply: dropped
	// (250, thrown away), deferred (4xx), refused (5xx).
	TarpitDropped, TarpitDeferred, TarpitRefused uint64

	StoreUp bool // false while a shared store cannot be reached

	// Observe: sessions that start now are in observe mode (mode =
	// "observe"). Would counts the observed sessions since start by what
	// enforce mode would have done with them ("greylisted", "tarpit
	// (trap)", "spliced", …).
	Observe bool
	Would   map[string]int64
}

var (
	openDesc = prometheus.NewDesc("moat_connections_open",
		"SMTP connections open now, by the class they are served as (black: held by the tarpit).", []string{"class"}, nil)
	refusedDesc = prometheus.NewDesc("moat_connections_refused_total",
		"Connections closed at once, by cause: max_conns, max_conns_per_ip, tarpit_full (a black host the tarpit had no room for).", []string{"cause"}, nil)
	heldDesc = prometheus.NewDesc("moat_tarpit_connections_held",
		"Connections the tarpit holds now.", nil, nil)
	capDesc = prometheus.NewDesc("moat_tarpit_connections_max",
		"The most connections the tarpit holds at once (tarpit.max_conns); beyond it black connections are closed at once.", nil, nil)
	secondsDesc = prometheus.NewDesc("moat_tarpit_seconds_total",
		"Seconds the tarpit has held connections since start, those held now included: the time bots wasted.", nil, nil)
	tarpitMsgDesc = prometheus.NewDesc("moat_tarpit_messages_total",
		"Messages bots sent to the end of DATA in the tarpit, by the reply they got: dropped (250, thrown away), deferred (4xx), refused (5xx). None is delivered.", []string{"outcome"}, nil)
	observeDesc = prometheus.NewDesc("moat_observe_mode",
		"1 while sessions start in observe mode (mode = \"observe\": every session goes on to the backend), 0 in enforce mode.", nil, nil)
	wouldDesc = prometheus.NewDesc("moat_observed_sessions_total",
		"Sessions observe mode passed on since start, by what enforce mode would have done with them (greylisted, tarpit (trap), spliced, …).", []string{"would"}, nil)
	storeUpDesc = prometheus.NewDesc("moat_store_up",
		"1 while the store can be reached; 0 while a shared store (Redis) cannot, when unknown hosts get 4xx.", nil, nil)
)

// liveCollector exports Live.
type liveCollector struct{ live func() Live }

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{openDesc, refusedDesc, heldDesc, capDesc, secondsDesc, tarpitMsgDesc, observeDesc, wouldDesc, storeUpDesc} {
		ch <- d
	}
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.live()
	for cl := store.Grey; cl <= store.Black; cl++ {
		ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, float64(l.Open[cl]), cl.String())
	}
	for cause, n := range l.Refused {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(n), cause)
	}
	ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, float64(l.Open[store.Black]))
	ch <- prometheus.MustNewConstMetric(capDesc, prometheus.GaugeValue, float64(l.TarpitMax))
	ch <- prometheus.MustNewConstMetric(secondsDesc, prometheus.CounterValue, l.TarpitSeconds)
	for _, o := range []struct {
		name string
		n    uint64
	}{{"dropped", l.TarpitDropped}, {"deferred", l.TarpitDeferred}, {"refused", l.TarpitRefused}} {
		ch <- prometheus.MustNewConstMetric(tarpitMsgDesc, prometheus.CounterValue, float64(o.n), o.name)
	}
	observe := 0.0
	if l.Observe {
		observe = 1
	}
	ch <- prometheus.MustNewConstMetric(observeDesc, prometheus.GaugeValue, observe)
	for would, n := range l.Would {
		ch <- prometheus.MustNewConstMetric(wouldDesc, prometheus.CounterValue, float64(n), would)
	}
	up := 0.0
	if l.StoreUp {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(storeUpDesc, prometheus.GaugeValue, up)
}
