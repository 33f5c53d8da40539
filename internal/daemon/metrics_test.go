package daemon_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/demo"
)

// The daemon wires every part to its metrics: sessions counted by the
// server, the hand-off by the dialog, the greylist pass and the trap hit
// by classify, the store's operations by its wrapper, the tarpit's and
// the store's state read at the scrape. The sessions are real ones, on
// loopback, against the demo's moat.
func TestMetricsWiring(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := demo.Start(ctx, demo.Options{NoTraffic: true, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	legit := netip.MustParseAddr("127.8.0.1")
	send := func(src netip.Addr, rcpt string) int {
		code, err := d.Traffic.Send(ctx, src, "mail.example.com", "a@example.com", []string{rcpt})
		if err != nil {
			t.Logf("session from %s: %v", src, err)
		}
		return code
	}
	if code := send(legit, "alice@"+demo.Domain); code != 451 {
		t.Fatalf("first attempt: %d, want 451", code)
	}
	time.Sleep(demo.MinRetry + 500*time.Millisecond)
	if code := send(legit, "alice@"+demo.Domain); code != 250 {
		t.Fatalf("retry: %d, want the message taken", code)
	}
	send(netip.MustParseAddr("127.8.1.1"), "trap@"+demo.Domain)

	rec := httptest.NewRecorder()
	d.Daemon.Admin.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	got := map[string]float64{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err == nil {
			got[name] = v
		}
	}
	for name, want := range map[string]float64{
		`moat_sessions_total{class="grey",verdict="greylisted"}`: 1,
		`moat_sessions_total{class="grey",verdict="passed"}`:     1,
		`moat_sessions_total{class="grey",verdict="trap"}`:       1,
		`moat_greylist_deferrals_total`:                          1,
		`moat_greylist_pass_delay_seconds_count`:                 1,
		`moat_backend_handoffs_total`:                            1,
		`moat_backend_up`:                                        1,
		`moat_trap_hits_total{outcome="black"}`:                  1,
		`moat_store_up`:                                          1,
		`moat_tarpit_connections_max`:                            15000,
		`moat_connections_open{class="white"}`:                   0,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if got[`moat_greylist_pass_delay_seconds_sum`] < demo.MinRetry.Seconds() {
		t.Errorf("pass delay %vs, want at least min_retry", got[`moat_greylist_pass_delay_seconds_sum`])
	}
	if got[`moat_store_operation_duration_seconds_count{op="lookup"}`] == 0 || got[`moat_store_operation_duration_seconds_count{op="flush"}`] == 0 {
		t.Error("the store's lookups and flushes are not timed")
	}
	if got[`go_goroutines`] == 0 || got[`process_open_fds`] == 0 {
		t.Error("no runtime or process metrics")
	}
}
