package admin

import (
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"moat/internal/dialog"
	"moat/internal/ledger"
	"moat/internal/metrics"
	"moat/internal/store"
)

// send makes one request to h and returns the status, the headers and
// the body.
func send(t *testing.T, h http.Handler, method, path, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req := httptest.NewRequest(method, "http://127.0.0.1:8026"+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Header(), string(b)
}

// The page is served to anyone: it holds no data. Everything else wants
// the token, /metrics included.
func TestDashboardPageNeedsNoTokenTheDataDoes(t *testing.T) {
	f := newFixture(t)
	f.svc.Metrics = metrics.New(metrics.Options{})
	h := f.svc.TCPHandler(testToken)
	for _, path := range []string{"/dashboard/", "/dashboard/app.js", "/dashboard/style.css"} {
		code, hdr, body := send(t, h, "GET", path, "", nil)
		if code != 200 || len(body) < 100 {
			t.Errorf("GET %s: %d, %d bytes", path, code, len(body))
		}
		if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if code, hdr, _ := send(t, h, "GET", "/", "", nil); code != http.StatusFound || hdr.Get("Location") != "/dashboard/" {
		t.Errorf("GET /: %d to %q, want a redirect to the dashboard", code, hdr.Get("Location"))
	}
	for _, path := range []string{"/v1/dashboard", "/metrics"} {
		if code, _, body := send(t, h, "GET", path, "", nil); code != 401 || strings.Contains(body, "moat_") {
			t.Errorf("GET %s without a token: %d %q, want 401 and nothing else", path, code, body)
		}
	}
	code, _, body := send(t, h, "GET", "/metrics", "", map[string]string{"Authorization": "Bearer " + testToken})
	if code != 200 || !strings.Contains(body, "moat_sessions_total") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics with the token: %d %.200q", code, body)
	}
}

// A request a browser sends for another site is refused, token or not,
// and nothing it asked for happens; no answer lets another site read it.
func TestDashboardRefusesCrossSiteRequests(t *testing.T) {
	f := newFixture(t)
	h := f.svc.TCPHandler(testToken)
	write := `{"ip":"198.51.100.7","class":"white"}`
	auth := "Bearer " + testToken
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"cross-site fetch with the token", map[string]string{"Authorization": auth, "Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site but other origin", map[string]string{"Authorization": auth, "Sec-Fetch-Site": "same-site"}, 403},
		{"foreign Origin with the token", map[string]string{"Authorization": auth, "Origin": "http://evil.example"}, 403},
		{"form post without token", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}, 403},
		{"no token at all", map[string]string{}, 401},
	} {
		code, hdr, body := send(t, h, "POST", "/v1/hosts", write, tc.hdr)
		if code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, code, body, tc.want)
		}
		if hdr.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: a CORS header lets another site read the answer", tc.name)
		}
	}
	// A preflight gets no permission either.
	_, hdr, _ := send(t, h, "OPTIONS", "/v1/hosts", "", map[string]string{"Origin": "http://evil.example",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"})
	if hdr.Get("Access-Control-Allow-Origin") != "" || hdr.Get("Access-Control-Allow-Headers") != "" {
		t.Errorf("preflight answered with CORS permission: %v", hdr)
	}
	if _, ok, _ := f.st.Host(store.HostPrefix(netip.MustParseAddr("198.51.100.7"))); ok {
		t.Fatal("a refused request changed the host")
	}
	// The page's own request, same origin, goes through.
	code, _, body := send(t, h, "POST", "/v1/hosts", write, map[string]string{"Authorization": auth,
		"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8026"})
	if code != 200 {
		t.Fatalf("same-origin write with the token: %d %s", code, body)
	}
	if h, ok, _ := f.st.Host(store.HostPrefix(netip.MustParseAddr("198.51.100.7"))); !ok || h.Class != store.White {
		t.Errorf("the page's write did not make the host white: %+v", h)
	}
}

func TestDashboardFigures(t *testing.T) {
	f := newFixture(t)
	m := metrics.New(metrics.Options{})
	f.svc.Metrics = m
	f.svc.Live = func() Live {
		return Live{Open: map[string]int64{"grey": 2, "black": 1}, TarpitHeld: 1, TarpitMax: 500, TarpitSeconds: 30}
	}
	f.populate(t)
	held := func(ip string, secs uint64) {
		if err := f.st.Put("held", ip, binary.BigEndian.AppendUint64(nil, secs), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	held("203.0.113.5", 100)
	held("203.0.113.6", 50)
	held("198.51.100.1", 120)
	f.st.Add("tarpit_seconds", 270)
	f.st.Add(ledger.HeldDayCounter(time.Now()), 70)
	m.Grey(netip.MustParseAddr("203.0.113.5"), dialog.Result{Verdict: dialog.Trap, Helo: "<img src=x>", Sender: "a@b", Reason: "trap hit <trap@example.org>"})
	m.Grey(netip.MustParseAddr("203.0.113.9"), dialog.Result{Verdict: dialog.Greylisted})

	d, err := f.svc.Dashboard()
	if err != nil {
		t.Fatal(err)
	}
	if d.Tarpit.Held != 1 || d.Tarpit.Max != 500 || d.Tarpit.SecondsToday != 100 || d.Tarpit.SecondsTotal != 300 {
		t.Errorf("tarpit = %+v, want held 1 of 500, 70+30 s today, 270+30 s in all", d.Tarpit)
	}
	if len(d.TopHosts) != 3 || d.TopHosts[0] != (HeldBy{Target: "198.51.100.1", Seconds: 120}) || d.TopHosts[2].Target != "203.0.113.6" {
		t.Errorf("top hosts = %+v", d.TopHosts)
	}
	if len(d.TopNets) != 2 || d.TopNets[0] != (HeldBy{Target: "203.0.113.0/24", Seconds: 150, Hosts: 2}) {
		t.Errorf("top networks = %+v", d.TopNets)
	}
	if len(d.TrapHits) != 1 || d.TrapHits[0].Helo != "<img src=x>" {
		t.Errorf("trap hits = %+v", d.TrapHits)
	}
	var greylisted uint32
	for _, s := range d.Chart.Series {
		if s.Name == "grey greylisted" {
			greylisted = s.Counts[len(s.Counts)-1]
		}
	}
	if greylisted != 1 {
		t.Errorf("chart = %+v, want the greylisted session in the last bar", d.Chart)
	}
	if d.Hosts["black"] != 3 || d.Open["grey"] != 2 {
		t.Errorf("hosts %v, open %v", d.Hosts, d.Open)
	}
	if len(d.PassDelays.Buckets) != len(metrics.PassDelayBuckets) {
		t.Errorf("pass delays %+v", d.PassDelays)
	}
}
