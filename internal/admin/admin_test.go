package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/traps"
)

var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	svc *Service
	st  *bolt.Store
	clk *clock.Fake
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := clock.NewFake(t0)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ts, err := traps.New(st, []string{"trap@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	g := greylist.New(greylist.Config{MinRetry: time.Minute, RetryWindow: 24 * time.Hour}, st, clk)
	eng := classify.New(classify.Config{BlackTTL: 24 * time.Hour, WhiteTTL: 864 * time.Hour, GreyTTL: 24 * time.Hour}, st, clk, g, ts)
	return &fixture{svc: &Service{Eng: eng, Traps: ts}, st: st, clk: clk}
}

func (f *fixture) put(t *testing.T, target string, c store.Class, reason string) {
	t.Helper()
	p, err := ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.PutHost(store.Host{Prefix: p, Class: c, Reason: reason, First: t0, Last: t0, Expires: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

// populate stores hosts out of order, of every class.
func (f *fixture) populate(t *testing.T) {
	f.put(t, "192.0.2.10", store.Black, "trap hit <trap@example.org>")
	f.put(t, "2001:db8::1", store.White, "greylist")
	f.put(t, "192.0.2.9", store.White, "greylist")
	f.put(t, "192.0.2.0/24", store.Black, "operator")
	f.put(t, "10.0.0.1", store.Grey, "greylisted: first attempt")
	f.put(t, "2001:db8::/32", store.Black, "operator")
}

func ips(hs []HostView) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.IP
	}
	return out
}

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":        "192.0.2.7/32",
		"192.0.2.0/24":     "192.0.2.0/24",
		"192.0.2.7/24":     "192.0.2.0/24",
		"2001:db8::1":      "2001:db8::1/128",
		"::ffff:192.0.2.7": "192.0.2.7/32",
	} {
		got, err := ParseTarget(in)
		if err != nil || got != netip.MustParsePrefix(want) {
			t.Errorf("ParseTarget(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "mx.example.org", "192.0.2.0/33", "192.0.2.256"} {
		if _, err := ParseTarget(in); err == nil || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("ParseTarget(%q): %v, want an error naming the input", in, err)
		}
	}
}

func TestHosts(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	tests := []struct {
		class string
		want  []string
	}{
		{"", []string{"10.0.0.1", "192.0.2.0/24", "192.0.2.9", "192.0.2.10", "2001:db8::/32", "2001:db8::1"}},
		{"black", []string{"192.0.2.0/24", "192.0.2.10", "2001:db8::/32"}},
		{"white", []string{"192.0.2.9", "2001:db8::1"}},
		{"grey", []string{"10.0.0.1"}},
		{"gray", []string{"10.0.0.1"}},
		{"BLACK", []string{"192.0.2.0/24", "192.0.2.10", "2001:db8::/32"}},
	}
	for _, tt := range tests {
		hs, err := f.svc.Hosts(tt.class)
		if err != nil {
			t.Fatalf("Hosts(%q): %v", tt.class, err)
		}
		if got := ips(hs); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Hosts(%q) = %v, want %v", tt.class, got, tt.want)
		}
	}
	hs, _ := f.svc.Hosts("black")
	got := hs[1]
	if got.IP != "192.0.2.10" || got.Class != "black" || got.Reason != "trap hit <trap@example.org>" ||
		!got.FirstSeen.Equal(t0) || !got.LastSeen.Equal(t0) || got.Expires == nil || !got.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("view = %+v, want 192.0.2.10 black, trap reason, seen t0, expires t0+1h", got)
	}
	if _, err := f.svc.Hosts("purple"); err == nil || !strings.Contains(err.Error(), `"purple"`) {
		t.Errorf("Hosts(purple): %v, want an error naming the class", err)
	}
	// Expired entries are not listed.
	f.clk.Advance(time.Hour)
	if hs, _ := f.svc.Hosts(""); len(hs) != 0 {
		t.Errorf("after expiry: %v", ips(hs))
	}
}

func TestSetClassAndForget(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.SetClass("192.0.2.7", "black", false); err != nil {
		t.Fatal(err)
	}
	if p, err := f.svc.SetClass("198.51.100.77/24", "white", false); err != nil || p.String() != "198.51.100.0/24" {
		t.Fatalf("SetClass(198.51.100.77/24) stored %v, %v; want 198.51.100.0/24", p, err)
	}
	hs, _ := f.svc.Hosts("")
	if got := ips(hs); !reflect.DeepEqual(got, []string{"192.0.2.7", "198.51.100.0/24"}) {
		t.Errorf("hosts = %v", got)
	}
	for _, h := range hs {
		if h.Expires != nil || h.Reason != "operator" {
			t.Errorf("operator entry %+v: want reason operator and no expiry", h)
		}
	}
	v, _ := f.svc.Eng.Classify(netip.MustParseAddr("198.51.100.77"))
	if v.Class != store.White {
		t.Errorf("host in a white network: %v", v.Class)
	}

	// grey forgets.
	if _, err := f.svc.SetClass("192.0.2.7", "grey", false); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Forget("198.51.100.0/24"); err != nil {
		t.Fatal(err)
	}
	if hs, _ := f.svc.Hosts(""); len(hs) != 0 {
		t.Errorf("hosts left: %v", ips(hs))
	}

	bad := []struct {
		name string
		err  error
		want string
	}{
		{"bad target", second(f.svc.SetClass("mx.example.org", "black", false)), `"mx.example.org"`},
		{"bad class", second(f.svc.SetClass("192.0.2.7", "purple", false)), `"purple"`},
		{"forget bad target", f.svc.Forget("192.0.2.300"), `"192.0.2.300"`},
		{"forget unknown", f.svc.Forget("192.0.2.99"), "192.0.2.99"},
	}
	for _, b := range bad {
		if b.err == nil || !strings.Contains(b.err.Error(), b.want) {
			t.Errorf("%s: %v, want an error naming %s", b.name, b.err, b.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// An operator's typo must not blacklist a good part of the Internet: a
// network wider than a /16 or a /32 needs force.
func TestSetClassTooWideNeedsForce(t *testing.T) {
	f := newFixture(t)
	for _, target := range []string{"0.0.0.0/0", "10.0.0.0/8", "192.168.0.0/15", "::/0", "2001:db8::/31"} {
		for _, class := range []string{"black", "white"} {
			_, err := f.svc.SetClass(target, class, false)
			if err == nil || !strings.Contains(err.Error(), "--force") {
				t.Errorf("SetClass(%s, %s) without force: %v, want a refusal naming --force", target, class, err)
			}
		}
	}
	if hs, _ := f.svc.Hosts(""); len(hs) != 0 {
		t.Fatalf("refused networks were stored: %v", ips(hs))
	}
	for _, target := range []string{"192.168.0.0/16", "2001:db8::/32"} {
		if _, err := f.svc.SetClass(target, "black", false); err != nil {
			t.Errorf("SetClass(%s): %v", target, err)
		}
	}
	if _, err := f.svc.SetClass("10.0.0.0/8", "black", true); err != nil {
		t.Errorf("SetClass(10.0.0.0/8, force): %v", err)
	}
	var e apiError
	if code := call(t, f.svc.Handler(), "POST", "/v1/hosts", map[string]any{"ip": "0.0.0.0/0", "class": "black"}, &e); code != 400 || !strings.Contains(e.Error, "--force") {
		t.Errorf("POST /v1/hosts 0.0.0.0/0: %d %q, want 400 naming --force", code, e.Error)
	}
}

func TestStatus(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	f.svc.Traps.Add("bait@example.net")
	f.st.Add(traps.HitCounter("trap@example.org"), 3)
	f.st.Add(traps.HitCounter("bait@example.net"), 2)
	f.st.Add("tarpit_seconds", 100)

	st, err := f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := Status{
		Hosts:         map[string]int{"white": 2, "grey": 1, "black": 3},
		Traps:         2,
		TrapHits:      5,
		TopTraps:      []TrapHits{{Addr: "trap@example.org", Hits: 3}, {Addr: "bait@example.net", Hits: 2}},
		TarpitSeconds: 100,
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Status = %+v\nwant %+v", st, want)
	}

	f.svc.Live = func() Live {
		return Live{Connections: 7, TarpitHeld: 4, TarpitSeconds: 2.5, TarpitRefused: 1,
			Sessions: map[string]int64{"white": 3}, Refused: map[string]int64{"tarpit_full": 1}, StoreErrors: 9}
	}
	st, err = f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	want.Running, want.Connections, want.TarpitHeld, want.TarpitRefused = true, 7, 4, 1
	want.TarpitSeconds = 102.5
	want.Sessions, want.Refused, want.StoreErrors = map[string]int64{"white": 3}, map[string]int64{"tarpit_full": 1}, 9
	if !reflect.DeepEqual(st, want) {
		t.Errorf("live Status = %+v\nwant %+v", st, want)
	}
}

// call sends one request to the handler and decodes the JSON answer.
func call(t *testing.T, h http.Handler, method, path string, body any, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, rd))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, path, err, rec.Body.String())
		}
	}
	return rec.Code
}

type apiError struct{ Error string }

func TestHandlerHosts(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	h := f.svc.Handler()

	var hs []HostView
	if code := call(t, h, "GET", "/v1/hosts?class=black", nil, &hs); code != 200 {
		t.Fatalf("GET hosts: %d", code)
	}
	if got := ips(hs); !reflect.DeepEqual(got, []string{"192.0.2.0/24", "192.0.2.10", "2001:db8::/32"}) {
		t.Errorf("GET /v1/hosts?class=black = %v", got)
	}
	var e apiError
	if code := call(t, h, "GET", "/v1/hosts?class=purple", nil, &e); code != 400 || !strings.Contains(e.Error, "purple") {
		t.Errorf("GET bad class: %d %q", code, e.Error)
	}

	var ok map[string]string
	if code := call(t, h, "POST", "/v1/hosts", map[string]string{"ip": "198.51.100.7", "class": "black"}, &ok); code != 200 {
		t.Fatalf("POST hosts: %d %v", code, ok)
	}
	if ok["ip"] != "198.51.100.7" || ok["class"] != "black" {
		t.Errorf("POST answer %v", ok)
	}
	if hst, found, _ := f.st.Host(netip.MustParsePrefix("198.51.100.7/32")); !found || hst.Class != store.Black || !hst.Expires.IsZero() {
		t.Errorf("after POST: %+v %v", hst, found)
	}
	e = apiError{}
	if code := call(t, h, "POST", "/v1/hosts", map[string]string{"ip": "198.51.100.7", "class": "mauve"}, &e); code != 400 || !strings.Contains(e.Error, "mauve") {
		t.Errorf("POST bad class: %d %q", code, e.Error)
	}
	e = apiError{}
	if code := call(t, h, "POST", "/v1/hosts", map[string]string{"ip": "nowhere", "class": "white"}, &e); code != 400 || !strings.Contains(e.Error, "nowhere") {
		t.Errorf("POST bad ip: %d %q", code, e.Error)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/hosts", strings.NewReader("{not json")))
	if rec.Code != 400 {
		t.Errorf("POST garbage: %d", rec.Code)
	}

	// DELETE takes an address or a CIDR, whose slash may be written as
	// is or escaped (as the command line's client does).
	for _, tt := range []struct{ path, target string }{
		{"192.0.2.0/24", "192.0.2.0/24"},
		{"198.51.100.7", "198.51.100.7"},
		{Escape("2001:db8::/32"), "2001:db8::/32"},
	} {
		ok = nil
		if code := call(t, h, "DELETE", "/v1/hosts/"+tt.path, nil, &ok); code != 200 || ok["forgotten"] != tt.target {
			t.Errorf("DELETE /v1/hosts/%s: %d %v", tt.path, code, ok)
		}
	}
	hs = nil
	call(t, h, "GET", "/v1/hosts", nil, &hs)
	if got := ips(hs); !reflect.DeepEqual(got, []string{"10.0.0.1", "192.0.2.9", "192.0.2.10", "2001:db8::1"}) {
		t.Errorf("after DELETE: %v", got)
	}
	e = apiError{}
	if code := call(t, h, "DELETE", "/v1/hosts/192.0.2.0/24", nil, &e); code != 400 || !strings.Contains(e.Error, "192.0.2.0/24") {
		t.Errorf("DELETE again: %d %q", code, e.Error)
	}
}

func TestHandlerTraps(t *testing.T) {
	f := newFixture(t)
	h := f.svc.Handler()

	var ok map[string]string
	if code := call(t, h, "POST", "/v1/traps", map[string]string{"addr": "Bait@Example.NET"}, &ok); code != 200 || ok["added"] != "bait@example.net" {
		t.Fatalf("POST traps: %d %v", code, ok)
	}
	var e apiError
	if code := call(t, h, "POST", "/v1/traps", map[string]string{"addr": "bait"}, &e); code != 400 || !strings.Contains(e.Error, `"bait"`) {
		t.Errorf("POST bad trap: %d %q", code, e.Error)
	}
	f.st.Add(traps.HitCounter("trap@example.org"), 4)
	var tl []traps.Trap
	if code := call(t, h, "GET", "/v1/traps", nil, &tl); code != 200 {
		t.Fatalf("GET traps: %d", code)
	}
	want := []traps.Trap{
		{Addr: "bait@example.net", Source: traps.FromStore},
		{Addr: "trap@example.org", Source: traps.FromConfig, Hits: 4},
	}
	if !reflect.DeepEqual(tl, want) {
		t.Errorf("GET traps = %+v, want %+v", tl, want)
	}
	ok = nil
	if code := call(t, h, "DELETE", "/v1/traps/bait@example.net", nil, &ok); code != 200 || ok["deleted"] != "bait@example.net" {
		t.Errorf("DELETE trap: %d %v", code, ok)
	}
	e = apiError{}
	if code := call(t, h, "DELETE", "/v1/traps/trap@example.org", nil, &e); code != 400 || !strings.Contains(e.Error, "traps.addresses") {
		t.Errorf("DELETE configured trap: %d %q", code, e.Error)
	}
	tl = nil
	call(t, h, "GET", "/v1/traps", nil, &tl)
	if len(tl) != 1 || tl[0].Addr != "trap@example.org" {
		t.Errorf("traps left: %+v", tl)
	}
}

func TestHandlerStatus(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	var st Status
	if code := call(t, f.svc.Handler(), "GET", "/v1/status", nil, &st); code != 200 {
		t.Fatalf("GET status: %d", code)
	}
	if st.Running || st.Traps != 1 || !reflect.DeepEqual(st.Hosts, map[string]int{"white": 2, "grey": 1, "black": 3}) {
		t.Errorf("status = %+v", st)
	}
}

func TestHandlerMethods(t *testing.T) {
	h := newFixture(t).svc.Handler()
	for _, r := range []struct{ method, path string }{
		{"PUT", "/v1/hosts"},
		{"POST", "/v1/status"},
		{"GET", "/v1/nothing"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(r.method, r.path, nil))
		if rec.Code != http.StatusMethodNotAllowed && rec.Code != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404 or 405", r.method, r.path, rec.Code)
		}
	}
}

func TestReplyStoreUnavailableIs500(t *testing.T) {
	rec := httptest.NewRecorder()
	reply(rec, nil, errors.Join(store.ErrUnavailable, errors.New("redis down")))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("store unavailable: %d, want 500", rec.Code)
	}
}

// socketPath returns a short socket path: unix socket paths are limited to
// about 100 bytes, and test temp directories can be long.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "moat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "sub", "moat.sock")
}

func TestListen(t *testing.T) {
	path := socketPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}

	// A second moat on the same path is refused while the first listens.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if ln2, err := Listen(path); err == nil {
		ln2.Close()
		t.Fatal("second Listen on a live socket succeeded")
	} else if !strings.Contains(err.Error(), "another moat") || !strings.Contains(err.Error(), path) {
		t.Errorf("second Listen: %v, want one naming the socket and saying another moat runs", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := socketPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed daemon leaves its socket file behind.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln, err = Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
}

func TestServeOverSocket(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	path := socketPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.svc.Serve(ctx, ln) }()

	c := NewClient(path)
	var hs []HostView
	if err := c.Do("GET", "/v1/hosts?class=white", nil, &hs); err != nil {
		t.Fatal(err)
	}
	if got := ips(hs); !reflect.DeepEqual(got, []string{"192.0.2.9", "2001:db8::1"}) {
		t.Errorf("hosts over the socket: %v", got)
	}
	if err := c.Do("POST", "/v1/hosts", map[string]string{"ip": "192.0.2.9", "class": "purple"}, nil); err == nil || !strings.Contains(err.Error(), "purple") {
		t.Errorf("bad request over the socket: %v, want the server's error", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	if err := NewClient(path).Do("GET", "/v1/status", nil, nil); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("client with no daemon: %v, want ErrNoDaemon", err)
	}
}

func TestHostsShowTarpitSeconds(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	if err := f.svc.Eng.Held(netip.MustParseAddr("192.0.2.10"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	hs, err := f.svc.Hosts("black")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		want := int64(0)
		if h.IP == "192.0.2.10" {
			want = 90
		}
		if h.Held != want {
			t.Errorf("%s: Held = %d, want %d", h.IP, h.Held, want)
		}
	}
}
