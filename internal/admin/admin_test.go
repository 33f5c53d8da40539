package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/ledger"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/traps"
)

var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a Service over a bolt store on a fake clock, with one trap
// from the configuration.
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
	return &fixture{svc: serviceOver(t, st, clk), st: st, clk: clk}
}

// serviceOver builds a Service over st as the daemon would.
func serviceOver(t *testing.T, st store.Store, clk clock.Clock) *Service {
	t.Helper()
	ts, err := traps.New(st, []string{"trap@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	g := greylist.New(greylist.Config{MinRetry: time.Minute, RetryWindow: 24 * time.Hour}, st, clk)
	eng := classify.New(classify.Config{BlackTTL: 24 * time.Hour, WhiteTTL: 864 * time.Hour, GreyTTL: 24 * time.Hour}, st, clk, g, ts)
	l, err := ledger.New(st, ledger.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return &Service{Eng: eng, Ledger: l}
}

// tarpitSession records a session of client in the ledger, as the tarpit
// would: one message per told, to alice and bob.
func (f *fixture) tarpitSession(t *testing.T, client string, told ...ledger.Told) {
	t.Helper()
	key := new(int)
	for _, k := range told {
		f.svc.Ledger.Mail(key, "bob@sender.example")
		f.svc.Ledger.Rcpt(key, "alice@example.org")
		f.svc.Ledger.Rcpt(key, "carol\r\n@example.org")
		f.svc.Ledger.Told(key, k)
	}
	if err := f.svc.Ledger.Record(key, netip.MustParseAddr(client)); err != nil {
		t.Fatal(err)
	}
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

// call sends one request to the handler and decodes the JSON answer. A
// string body is sent as it is, any other as JSON.
func call(t *testing.T, h http.Handler, method, path string, body any, out any) int {
	t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
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

func TestStatusOf(t *testing.T) {
	unavailable := fmt.Errorf("%w: redis 192.0.2.1:6379 is unreachable", store.ErrUnavailable)
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"bad request", badRequest{errors.New("class \"purple\"")}, 400},
		{"not found", unknownHost("192.0.2.1"), 404},
		{"store unavailable", unavailable, 503},
		// Whatever else a request met, a store that cannot be reached
		// says the most: trying again later may work.
		{"bad request while the store is unavailable", badRequest{unavailable}, 503},
		{"anything else", errors.New("disk on fire"), 500},
	} {
		rec := httptest.NewRecorder()
		reply(rec, nil, tc.err)
		var e apiError
		if json.Unmarshal(rec.Body.Bytes(), &e); rec.Code != tc.want || e.Error != tc.err.Error() {
			t.Errorf("%s: %d %q, want %d with the error's message", tc.name, rec.Code, e.Error, tc.want)
		}
	}
}

// failingStore fails the reads and writes the API makes with err, as a
// shared store that cannot be reached does, or a broken disk.
type failingStore struct {
	store.Store
	err error
}

func (s failingStore) Hosts(func(store.Host) bool) error { return s.err }
func (s failingStore) Lookup(netip.Addr) (store.Host, bool, error) {
	return store.Host{}, false, s.err
}
func (s failingStore) UpdateHost(netip.Prefix, func(store.Host, bool) (store.Host, bool)) (store.Host, bool, error) {
	return store.Host{}, false, s.err
}
func (s failingStore) PutHost(store.Host) error            { return s.err }
func (s failingStore) DeleteHost(netip.Prefix) error       { return s.err }
func (s failingStore) AddTrap(string) error                { return s.err }
func (s failingStore) Counters() (map[string]int64, error) { return nil, s.err }

// A request that fails in the store is answered 503 when the store cannot
// be reached (ask again later) and 500 when it failed otherwise, with the
// store's message either way; never 400, which says the request is wrong.
func TestStoreFailureStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: redis 192.0.2.1:6379 is unreachable", store.ErrUnavailable), 503},
		{errors.New("disk on fire"), 500},
	} {
		f := newFixture(t)
		h := serviceOver(t, failingStore{Store: f.st, err: tc.err}, f.clk).Handler()
		export := `{"type":"moat-export","version":1}` + "\n" +
			`{"type":"host","prefix":"192.0.2.7/32","class":"black"}` + "\n" +
			`{"type":"end","counts":{"hosts":1,"traps":0,"counters":0,"triplets":0,"records":0}}` + "\n"
		for _, r := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1/hosts", nil},
			{"POST", "/v1/hosts", map[string]string{"ip": "192.0.2.7", "class": "black"}},
			{"GET", "/v1/hosts/192.0.2.7/history", nil},
			{"DELETE", "/v1/hosts/192.0.2.7", nil},
			{"GET", "/v1/traps", nil},
			{"POST", "/v1/traps", map[string]string{"addr": "new@example.org"}},
			{"POST", "/v1/import", export},
		} {
			var e apiError
			if code := call(t, h, r.method, r.path, r.body, &e); code != tc.code || !strings.Contains(e.Error, tc.err.Error()) {
				t.Errorf("%s %s with the store failing (%v): %d %q, want %d with the store's message", r.method, r.path, tc.err, code, e.Error, tc.code)
			}
		}
	}
}
