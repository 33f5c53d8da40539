package metrics

import (
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/dialog"
	"moat/internal/greylist"
	"moat/internal/reputation"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/store/storetest"
)

var client = netip.MustParseAddr("192.0.2.7")

// fakeClock is a settable time for the Timeline.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest(t *testing.T, live func() Live) (*Metrics, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	m := New(Options{Step: time.Minute, Bars: 10, Live: live, Now: clk.Now})
	clk.Advance(time.Hour) // the chart has no bar from before the start
	return m, clk
}

// expect compares the registry's text exposition of the named metrics
// with want.
func expect(t *testing.T, m *Metrics, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestSessionsByClassAndVerdict(t *testing.T) {
	m, clk := newTest(t, nil)
	m.White(true)
	m.White(false)
	m.Grey(client, dialog.Result{Verdict: dialog.Greylisted})
	m.Grey(client, dialog.Result{Verdict: dialog.Greylisted})
	clk.Advance(time.Minute)
	m.Grey(client, dialog.Result{Verdict: dialog.Passed})
	m.Black(time.Second)
	expect(t, m, `
# HELP moat_sessions_total Sessions that ended, by the class of the host and how the session went (the verdict of its log line).
# TYPE moat_sessions_total counter
moat_sessions_total{class="black",verdict="tarpit"} 1
moat_sessions_total{class="grey",verdict="bare-newline"} 0
moat_sessions_total{class="grey",verdict="backend-lost"} 0
moat_sessions_total{class="grey",verdict="backend-unavailable"} 0
moat_sessions_total{class="grey",verdict="black"} 0
moat_sessions_total{class="grey",verdict="closed"} 0
moat_sessions_total{class="grey",verdict="dnsbl"} 0
moat_sessions_total{class="grey",verdict="early-talker"} 0
moat_sessions_total{class="grey",verdict="error"} 0
moat_sessions_total{class="grey",verdict="greylisted"} 2
moat_sessions_total{class="grey",verdict="passed"} 1
moat_sessions_total{class="grey",verdict="quit"} 0
moat_sessions_total{class="grey",verdict="refused"} 0
moat_sessions_total{class="grey",verdict="smuggling"} 0
moat_sessions_total{class="grey",verdict="tempfail"} 0
moat_sessions_total{class="grey",verdict="timeout"} 0
moat_sessions_total{class="grey",verdict="too-many-commands"} 0
moat_sessions_total{class="grey",verdict="too-many-errors"} 0
moat_sessions_total{class="grey",verdict="trap"} 0
moat_sessions_total{class="white",verdict="backend-unavailable"} 1
moat_sessions_total{class="white",verdict="spliced"} 1
`, "moat_sessions_total")
	// A white session the backend could not take is a backend error too.
	if got := testutil.ToFloat64(m.backend[dialog.BackendDialFailed]); got != 1 {
		t.Errorf("backend dial errors = %v, want 1", got)
	}

	// The chart has the same sessions, in the bar of their minute.
	c := m.Timeline.Chart(3)
	got := map[string][]uint32{}
	for _, s := range c.Series {
		got[s.Name] = s.Counts
	}
	want := map[string][]uint32{
		"white spliced":             {0, 1, 0},
		"white backend-unavailable": {0, 1, 0},
		"grey greylisted":           {0, 2, 0},
		"grey passed":               {0, 0, 1},
		"black tarpit":              {0, 0, 1},
	}
	if len(got) != len(want) {
		t.Errorf("chart series %v, want %v", got, want)
	}
	for name, w := range want {
		if g := got[name]; len(g) != len(w) || g[0] != w[0] || g[1] != w[1] || g[2] != w[2] {
			t.Errorf("chart %q = %v, want %v", name, g, w)
		}
	}
	if wantStart := clk.Now().Add(-2 * time.Minute).Unix(); c.Start != wantStart || c.Step != 60 {
		t.Errorf("chart starts %d, step %v; want %d, 60", c.Start, c.Step, wantStart)
	}
}

// A bar that has left the window is cleared before it is reused: the
// chart never shows a session of another hour in this one's place.
func TestTimelineForgetsOldBars(t *testing.T) {
	m, clk := newTest(t, nil)
	m.Grey(client, dialog.Result{Verdict: dialog.Greylisted})
	clk.Advance(10 * time.Minute) // the ring holds 10 bars: same slot
	m.Grey(client, dialog.Result{Verdict: dialog.Quit})
	c := m.Timeline.Chart(100)
	if len(c.Series) > 0 && len(c.Series[0].Counts) != 10 {
		t.Errorf("chart of %d bars, want the 10 kept", len(c.Series[0].Counts))
	}
	if len(c.Series) != 1 || c.Series[0].Name != "grey quit" || c.Series[0].Counts[9] != 1 {
		t.Errorf("chart = %+v, want only the quit session in the last bar", c)
	}
}

// A moat that started a minute ago draws two bars, not the hours before
// it ran.
func TestChartStartsAtTheStart(t *testing.T) {
	clk := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)}
	m := New(Options{Step: time.Minute, Bars: 10, Now: clk.Now})
	clk.Advance(time.Minute)
	m.Grey(client, dialog.Result{Verdict: dialog.Quit})
	c := m.Timeline.Chart(10)
	if len(c.Series) != 1 || len(c.Series[0].Counts) != 2 || c.Start != time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).Unix() {
		t.Errorf("chart = %+v, want two bars from 12:00", c)
	}
}

func TestTrapHitsKeepWhatTheClientSaid(t *testing.T) {
	m, _ := newTest(t, nil)
	for i := range 25 {
		v := dialog.Trap
		if i == 24 {
			v = dialog.Refused
		}
		m.Grey(client, dialog.Result{Verdict: v, Helo: "<b>bot</b>", Sender: "x@example.net", Reason: "trap hit <trap@example.org>"})
	}
	m.Grey(client, dialog.Result{Verdict: dialog.Greylisted})
	r := m.Traps.Recent()
	if len(r) != 20 {
		t.Fatalf("%d trap hits kept, want the last 20", len(r))
	}
	if !r[0].Refused || r[1].Refused || r[0].Helo != "<b>bot</b>" || r[0].Client != "192.0.2.7" {
		t.Errorf("newest hit = %+v, then %+v", r[0], r[1])
	}
}

func TestEvidenceCounters(t *testing.T) {
	m, _ := newTest(t, nil)
	m.TrapHit(false)
	m.TrapHit(true)
	m.Greylist(greylist.Result{Outcome: greylist.Defer})
	m.Greylist(greylist.Result{Outcome: greylist.Pass, FirstPass: true, Delay: 90 * time.Second})
	m.Greylist(greylist.Result{Outcome: greylist.Pass, Delay: 2 * time.Hour}) // a later recipient: no new delay
	m.DNSBL(reputation.Score{Failed: []string{"a.example", "b.example"}}, classify.Verdict{Class: store.Black})
	m.Feedback(reputation.Feedback{Verdict: reputation.Spam})
	m.Backend(dialog.BackendAttached)
	m.Backend(dialog.BackendBroke)
	expect(t, m, `
# HELP moat_trap_hits_total Spamtraps named in MAIL or RCPT or found in the mail log; outcome black (the host is now black) or refused (a host vouched for: the message refused, the host kept).
# TYPE moat_trap_hits_total counter
moat_trap_hits_total{outcome="black"} 1
moat_trap_hits_total{outcome="refused"} 1
# HELP moat_greylist_passes_total Recipients of grey hosts that passed the greylist (a triplet's first pass and the recipients that follow it).
# TYPE moat_greylist_passes_total counter
moat_greylist_passes_total 2
# HELP moat_greylist_deferrals_total Recipients of grey hosts deferred by the greylist (451 4.7.1): first attempts and retries too soon.
# TYPE moat_greylist_deferrals_total counter
moat_greylist_deferrals_total 1
# HELP moat_dnsbl_zone_failures_total DNS list zones that did not answer a lookup in time (or failed): they counted 0.
# TYPE moat_dnsbl_zone_failures_total counter
moat_dnsbl_zone_failures_total 2
# HELP moat_backend_handoffs_total Grey sessions that passed the greylist and got the backend attached.
# TYPE moat_backend_handoffs_total counter
moat_backend_handoffs_total 1
# HELP moat_backend_up 1 if the last connection to the backend (a splice, a hand-off or the periodic EHLO probe) succeeded, else 0.
# TYPE moat_backend_up gauge
moat_backend_up 1
`, "moat_trap_hits_total", "moat_greylist_passes_total", "moat_greylist_deferrals_total", "moat_dnsbl_zone_failures_total",
		"moat_backend_handoffs_total", "moat_backend_up")
	if got := testutil.ToFloat64(m.dnsbl[store.Black]); got != 1 {
		t.Errorf("dnsbl black lookups = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.feedbackSpam); got != 1 {
		t.Errorf("spam feedback = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.backend[dialog.BackendBroke]); got != 1 {
		t.Errorf("lost backends = %v, want 1", got)
	}
	b, n, sum := m.PassDelays()
	if n != 1 || sum != 90 {
		t.Fatalf("pass delays: %d passes, %v s; want the first pass only: 1, 90", n, sum)
	}
	for _, bk := range b {
		if want := uint64(0); bk.Le >= 120 {
			want = 1
			if bk.Count != want {
				t.Errorf("bucket le=%v has %d, want %d", bk.Le, bk.Count, want)
			}
		} else if bk.Count != want {
			t.Errorf("bucket le=%v has %d, want %d", bk.Le, bk.Count, want)
		}
	}
}

func TestLiveReadAtScrape(t *testing.T) {
	var l Live
	m, _ := newTest(t, func() Live { return l })
	l = Live{Open: [3]int64{store.Grey: 4, store.White: 2, store.Black: 7}, Refused: map[string]int64{"tarpit_full": 3},
		TarpitMax: 100, TarpitSeconds: 12.5, TarpitDropped: 5, StoreUp: true,
		Observe: true, Would: map[string]int64{"greylisted": 9, "tarpit (trap)": 2}}
	expect(t, m, `
# HELP moat_connections_open SMTP connections open now, by the class they are served as (black: held by the tarpit).
# TYPE moat_connections_open gauge
moat_connections_open{class="black"} 7
moat_connections_open{class="grey"} 4
moat_connections_open{class="white"} 2
# HELP moat_connections_refused_total Connections closed at once, by cause: max_conns, max_conns_per_ip, tarpit_full (a black host the tarpit had no room for).
# TYPE moat_connections_refused_total counter
moat_connections_refused_total{cause="tarpit_full"} 3
# HELP moat_tarpit_connections_held Connections the tarpit holds now.
# TYPE moat_tarpit_connections_held gauge
moat_tarpit_connections_held 7
# HELP moat_tarpit_connections_max The most connections the tarpit holds at once (tarpit.max_conns); beyond it black connections are closed at once.
# TYPE moat_tarpit_connections_max gauge
moat_tarpit_connections_max 100
# HELP moat_tarpit_seconds_total Seconds the tarpit has held connections since start, those held now included: the time bots wasted.
# TYPE moat_tarpit_seconds_total counter
moat_tarpit_seconds_total 12.5
# HELP moat_tarpit_messages_total Messages bots sent to the end of DATA in the tarpit, by the reply they got: dropped (250, thrown away), deferred (4xx), refused (5xx). None is delivered.
# TYPE moat_tarpit_messages_total counter
moat_tarpit_messages_total{outcome="deferred"} 0
moat_tarpit_messages_total{outcome="dropped"} 5
moat_tarpit_messages_total{outcome="refused"} 0
# HELP moat_observe_mode 1 while sessions start in observe mode (mode = "observe": every session goes on to the backend), 0 in enforce mode.
# TYPE moat_observe_mode gauge
moat_observe_mode 1
# HELP moat_observed_sessions_total Sessions observe mode passed on since start, by what enforce mode would have done with them (greylisted, tarpit (trap), spliced, …).
# TYPE moat_observed_sessions_total counter
moat_observed_sessions_total{would="greylisted"} 9
moat_observed_sessions_total{would="tarpit (trap)"} 2
# HELP moat_store_up 1 while the store can be reached; 0 while a shared store (Redis) cannot, when unknown hosts get 4xx.
# TYPE moat_store_up gauge
moat_store_up 1
`, "moat_connections_open", "moat_connections_refused_total", "moat_tarpit_connections_held", "moat_tarpit_connections_max",
		"moat_tarpit_seconds_total", "moat_tarpit_messages_total", "moat_observe_mode", "moat_observed_sessions_total", "moat_store_up")
	// Go's runtime and the process are there too.
	n, err := testutil.GatherAndCount(m.Registry, "go_goroutines", "process_cpu_seconds_total")
	if err != nil || n != 2 {
		t.Errorf("runtime and process metrics: %d found (%v), want 2", n, err)
	}
}

// The timed store is still a store: the conformance suite passes through
// it, and its operations are counted.
func TestTimedStoreConforms(t *testing.T) {
	m, _ := newTest(t, nil)
	storetest.Run(t, func(t *testing.T, c *clock.Fake) store.Store {
		st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: c})
		if err != nil {
			t.Fatal(err)
		}
		return m.Store(st)
	})
	if n := testutil.CollectAndCount(m.Registry, "moat_store_operation_duration_seconds"); n != int(numOps) {
		t.Errorf("%d latency series, want one per operation (%d)", n, numOps)
	}
	if got := histCount(t, m, "lookup"); got == 0 {
		t.Error("no lookup timed")
	}
}

func histCount(t *testing.T, m *Metrics, op string) uint64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "moat_store_operation_duration_seconds" {
			continue
		}
		for _, mt := range mf.Metric {
			if mt.Label[0].GetValue() == op {
				return mt.Histogram.GetSampleCount()
			}
		}
	}
	return 0
}

// sharedFake is a store that reports outages and changes, as Redis does.
type sharedFake struct {
	store.Store
	errs int
}

func (sharedFake) Down() (bool, time.Time)       { return true, time.Unix(1, 0) }
func (sharedFake) WatchHosts(func(netip.Prefix)) {}
func (s *sharedFake) Lookup(netip.Addr) (store.Host, bool, error) {
	return store.Host{}, false, store.ErrUnavailable
}
func (s *sharedFake) DeleteHost(netip.Prefix) error { return store.ErrNotFound }

// What a shared store offers beyond the interface survives the wrapping:
// status asks it whether it is down, the bypass follows its changes.
func TestTimedStoreKeepsSharedFeatures(t *testing.T) {
	m, _ := newTest(t, nil)
	st := m.Store(&sharedFake{})
	if _, ok := st.(store.Watcher); !ok {
		t.Error("the wrapped store lost WatchHosts")
	}
	d, ok := st.(interface{ Down() (bool, time.Time) })
	if !ok {
		t.Fatal("the wrapped store lost Down")
	}
	if down, _ := d.Down(); !down {
		t.Error("Down not passed through")
	}
	st.Lookup(client)
	st.DeleteHost(netip.MustParsePrefix("192.0.2.7/32"))
	expect(t, m, `
# HELP moat_store_errors_total Store operations that failed, by operation (a deletion of nothing is no failure).
# TYPE moat_store_errors_total counter
`+zeroErrorsBut("lookup", 1), "moat_store_errors_total")
	// A store without those features does not pretend to have them.
	plain := m.Store(&struct{ store.Store }{})
	if _, ok := plain.(store.Watcher); ok {
		t.Error("a plain store became a Watcher")
	}
}

func zeroErrorsBut(op string, n int) string {
	var b strings.Builder
	names := append([]string(nil), opNames[:]...)
	sort.Strings(names)
	for _, o := range names {
		v := 0
		if o == op {
			v = n
		}
		b.WriteString("moat_store_errors_total{op=\"" + o + "\"} " + strconv.Itoa(v) + "\n")
	}
	return b.String()
}

// The hooks on the hot paths allocate nothing: the label children were
// resolved when the Metrics was built.
func TestHooksDoNotAllocate(t *testing.T) {
	m, _ := newTest(t, nil)
	res := dialog.Result{Verdict: dialog.Greylisted}
	pass := greylist.Result{Outcome: greylist.Pass, FirstPass: true, Delay: time.Minute}
	allocs := testing.AllocsPerRun(1000, func() {
		m.Grey(client, res)
		m.White(true)
		m.Black(time.Second)
		m.Backend(dialog.BackendAttached)
		m.TrapHit(false)
		m.Greylist(pass)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per session's hooks, want 0", allocs)
	}
}

func BenchmarkGreySession(b *testing.B) {
	m := New(Options{})
	res := dialog.Result{Verdict: dialog.Greylisted}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Grey(client, res)
		}
	})
}

// The price of timing the store: a lookup served from memory, bare and
// through the wrapper.
func BenchmarkStoreLookup(b *testing.B) {
	st, err := bolt.Open(filepath.Join(b.TempDir(), "moat.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	st.PutHost(store.Host{Prefix: store.HostPrefix(client), Class: store.White})
	for _, bc := range []struct {
		name string
		st   store.Store
	}{{"bare", st}, {"timed", New(Options{}).Store(st)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.st.Lookup(client)
			}
		})
	}
}
