// Package metrics counts what moat does, for Prometheus and for the
// dashboard.
//
// The parts of moat do not import it: they offer hooks (server.Hooks,
// dialog.Hooks, classify.Hooks) and keep figures of their own (open
// connections, the tarpit's held time), and the daemon connects those to a
// Metrics. What is counted as it happens is counted into Prometheus
// children resolved once, when the Metrics is built: a session, a hand-off
// or a greylist check costs an atomic add, never a label lookup or an
// allocation. What the parts keep themselves is read only when scraped
// (Live). Store operations are timed by wrapping the store (Store).
//
// It also keeps the little history the dashboard draws and Prometheus does
// not hold: sessions per class and verdict over the last hours (Timeline)
// and the last trap hits with what the client said (TrapHits).
package metrics

import (
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"moat/internal/classify"
	"moat/internal/dialog"
	"moat/internal/greylist"
	"moat/internal/reputation"
	"moat/internal/store"
)

// Options set up a Metrics.
type Options struct {
	// Step is the width of one bar of the sessions chart (Timeline);
	// default a minute.
	Step time.Duration
	// Bars is how many steps the Timeline keeps; default 360.
	Bars int
	// Live is read at every scrape for the figures the parts keep
	// themselves; nil: none are exported.
	Live func() Live
	// Now is the clock of the Timeline and of the trap hits; default
	// time.Now.
	Now func() time.Time
}

// Metrics is moat's Prometheus registry with its counters resolved, and
// the dashboard's history. Its methods are the hooks the daemon gives the
// parts; they are safe for concurrent use.
type Metrics struct {
	Registry *prometheus.Registry
	Timeline *Timeline
	Traps    *TrapHits // the last trap hits seen in sessions

	now func() time.Time

	spliced, whiteDown, tarpit prometheus.Counter
	grey                       []prometheus.Counter // by dialog.Verdict
	// series of the Timeline for each kind of session
	splicedAt, whiteDownAt, tarpitAt, greyAt int

	trapBlack, trapRefused prometheus.Counter
	passes, deferrals      prometheus.Counter
	passDelay              prometheus.Histogram
	backend                [4]prometheus.Counter // by dialog.BackendEvent; [BackendAttached] counts hand-offs
	backendUp              prometheus.Gauge
	dnsbl                  [3]prometheus.Counter // by store.Class of the verdict
	dnsblFailed            prometheus.Counter
	feedbackSpam           prometheus.Counter
	feedbackHam            prometheus.Counter
	store                  storeMetrics
}

// PassDelayBuckets are the upper bounds, in seconds, of the greylist pass
// delay histogram: a few seconds (a demo, a very short min_retry) up to a
// day (the default retry_window).
var PassDelayBuckets = []float64{5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400}

// New builds a Metrics with its registry: moat's metrics, Go's runtime and
// the process's.
func New(o Options) *Metrics {
	if o.Step <= 0 {
		o.Step = time.Minute
	}
	if o.Bars <= 0 {
		o.Bars = 360
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{Registry: reg, now: o.Now, Traps: newTrapHits(20)}
	f := factory{reg}

	sessions := f.counterVec("moat_sessions_total", "Sessions that ended, by the class of the host and how the session went (the verdict of its log line).", "class", "verdict")
	var names []string
	series := func(class, verdict string) (prometheus.Counter, int) {
		names = append(names, class+" "+verdict)
		return sessions.WithLabelValues(class, verdict), len(names) - 1
	}
	m.spliced, m.splicedAt = series("white", "spliced")
	m.whiteDown, m.whiteDownAt = series("white", "backend-unavailable")
	m.tarpit, m.tarpitAt = series("black", "tarpit")
	m.greyAt = len(names)
	for v := dialog.Verdict(0); v.String() != "unknown"; v++ {
		c, _ := series("grey", v.String())
		m.grey = append(m.grey, c)
	}
	m.Timeline = newTimeline(o.Step, o.Bars, names, o.Now)

	traps := f.counterVec("moat_trap_hits_total", "Spamtraps named in MAIL or RCPT or found in the mail log; outcome black (the host is now black) or refused (a host vouched for: the message refused, the host kept).", "outcome")
	m.trapBlack, m.trapRefused = traps.WithLabelValues("black"), traps.WithLabelValues("refused")
	m.passes = f.counter("moat_greylist_passes_total", "Recipients of grey hosts that passed the greylist (a triplet's first pass and the recipients that follow it).")
	m.deferrals = f.counter("moat_greylist_deferrals_total", "Recipients of grey hosts deferred by the greylist (451 4.7.1): first attempts and retries too soon.")
	m.passDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "moat_greylist_pass_delay_seconds",
		Help:    "Time from a triplet's first attempt to the retry that passed it: what a legitimate sender waited. Its count is the triplets passed.",
		Buckets: PassDelayBuckets,
	})
	reg.MustRegister(m.passDelay)

	backend := f.counterVec("moat_backend_errors_total", "Connections to the backend that failed: dial (could not connect), refused (banner or EHLO not a success), lost (broke or gave up during a session). The client always gets a 4xx.", "kind")
	for _, ev := range []dialog.BackendEvent{dialog.BackendDialFailed, dialog.BackendGreetRefused, dialog.BackendBroke} {
		m.backend[ev] = backend.WithLabelValues(ev.String())
	}
	m.backend[dialog.BackendAttached] = f.counter("moat_backend_handoffs_total", "Grey sessions that passed the greylist and got the backend attached.")
	m.backendUp = f.gauge("moat_backend_up", "1 if the last connection to the backend (a splice, a hand-off or the periodic EHLO probe) succeeded, else 0.")

	dnsbl := f.counterVec("moat_dnsbl_lookups_total", "DNS list lookups of connecting grey hosts, by the verdict their score led to: black, white (an allow list) or grey (neither).", "verdict")
	for c := store.Grey; c <= store.Black; c++ {
		m.dnsbl[c] = dnsbl.WithLabelValues(c.String())
	}
	m.dnsblFailed = f.counter("moat_dnsbl_zone_failures_total", "DNS list zones that did not answer a lookup in time (or failed): they counted 0.")

	fb := f.counterVec("moat_feedback_total", "Verdicts of the real mail server's content filters weighed into hosts' karma.", "verdict")
	m.feedbackSpam, m.feedbackHam = fb.WithLabelValues(string(reputation.Spam)), fb.WithLabelValues(string(reputation.Ham))

	m.store = newStoreMetrics(f)
	if o.Live != nil {
		reg.MustRegister(&liveCollector{live: o.Live})
	}
	return m
}

// factory registers metrics as it makes them.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

// White counts a white host's session (server.Hooks.White).
func (m *Metrics) White(spliced bool) {
	if spliced {
		m.spliced.Inc()
		m.Timeline.Add(m.splicedAt)
		m.backendUp.Set(1)
		return
	}
	m.whiteDown.Inc()
	m.Timeline.Add(m.whiteDownAt)
	m.backend[dialog.BackendDialFailed].Inc()
	m.backendUp.Set(0)
}

// Grey counts a grey host's session and keeps it among the recent trap
// hits if it named a trap (server.Hooks.Grey).
func (m *Metrics) Grey(client netip.Addr, res dialog.Result) {
	if int(res.Verdict) < len(m.grey) {
		m.grey[res.Verdict].Inc()
		m.Timeline.Add(m.greyAt + int(res.Verdict))
	}
	if res.Verdict == dialog.Trap || res.Verdict == dialog.Refused {
		m.Traps.add(TrapHit{At: m.now(), Client: client.String(), Helo: res.Helo, Sender: res.Sender,
			Reason: res.Reason, Refused: res.Verdict == dialog.Refused})
	}
}

// Black counts a connection the tarpit let go (server.Hooks.Black).
func (m *Metrics) Black(time.Duration) {
	m.tarpit.Inc()
	m.Timeline.Add(m.tarpitAt)
}

// Backend counts a grey session's backend connection (dialog.Hooks.Backend).
func (m *Metrics) Backend(ev dialog.BackendEvent) {
	if int(ev) >= len(m.backend) {
		return
	}
	m.backend[ev].Inc()
	switch ev {
	case dialog.BackendAttached:
		m.backendUp.Set(1)
	case dialog.BackendDialFailed, dialog.BackendGreetRefused:
		m.backendUp.Set(0)
	}
}

// BackendProbe records the periodic reading of the backend's EHLO.
func (m *Metrics) BackendProbe(ok bool) {
	if ok {
		m.backendUp.Set(1)
	} else {
		m.backendUp.Set(0)
	}
}

// TrapHit counts a trap named (classify.Hooks.TrapHit).
func (m *Metrics) TrapHit(refused bool) {
	if refused {
		m.trapRefused.Inc()
	} else {
		m.trapBlack.Inc()
	}
}

// Greylist counts a greylist check, and the delay of a triplet's first
// pass (classify.Hooks.Greylist).
func (m *Metrics) Greylist(r greylist.Result) {
	if r.Outcome != greylist.Pass {
		m.deferrals.Inc()
		return
	}
	m.passes.Inc()
	if r.FirstPass {
		m.passDelay.Observe(r.Delay.Seconds())
	}
}

// DNSBL counts a DNS list lookup (classify.Hooks.DNSBL).
func (m *Metrics) DNSBL(sc reputation.Score, v classify.Verdict) {
	if int(v.Class) < len(m.dnsbl) {
		m.dnsbl[v.Class].Inc()
	}
	m.dnsblFailed.Add(float64(len(sc.Failed)))
}

// Feedback counts a filter's verdict (classify.Hooks.Feedback).
func (m *Metrics) Feedback(fb reputation.Feedback) {
	if fb.Verdict == reputation.Ham {
		m.feedbackHam.Inc()
	} else {
		m.feedbackSpam.Inc()
	}
}

// Bucket is one bar of a histogram: how many observations were at most Le.
type Bucket struct {
	Le    float64 `json:"le"`
	Count uint64  `json:"count"` // cumulative, as Prometheus counts
}

// PassDelays returns the greylist pass delay histogram since start:
// its cumulative buckets, the number of passes and their sum in seconds.
func (m *Metrics) PassDelays() (buckets []Bucket, count uint64, sum float64) {
	var d dto.Metric
	if err := m.passDelay.Write(&d); err != nil || d.Histogram == nil {
		return nil, 0, 0
	}
	for _, b := range d.Histogram.Bucket {
		buckets = append(buckets, Bucket{Le: b.GetUpperBound(), Count: b.GetCumulativeCount()})
	}
	return buckets, d.Histogram.GetSampleCount(), d.Histogram.GetSampleSum()
}
