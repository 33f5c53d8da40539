package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"moat/internal/bypass"
)

// The kernel bypass's sizes reach "moat status" and GET /v1/bypass; with
// the bypass off, status says nothing of it and the route says it is off.
func TestStatusShowsBypass(t *testing.T) {
	f := newFixture(t)
	h := f.svc.Handler()
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	if st, err := f.svc.Status(); err != nil || st.Bypass != nil {
		t.Errorf("bypass off: status %+v, %v; want no bypass", st.Bypass, err)
	}
	if rec := get("/v1/bypass"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "bypass is off") {
		t.Errorf("bypass off: GET /v1/bypass = %d %s", rec.Code, rec.Body)
	}

	want := Bypass{Table: "inet moat", Sizes: bypass.Sizes{Hosts4: 12, Hosts6: 2, Nets4: 1}}
	f.svc.Bypass = func() Bypass { return want }
	st, err := f.svc.Status()
	if err != nil || st.Bypass == nil || *st.Bypass != want {
		t.Errorf("status bypass = %+v, %v; want %+v", st.Bypass, err, want)
	}
	rec := get("/v1/bypass")
	var got Bypass
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got != want {
		t.Errorf("GET /v1/bypass = %s (%v), want %+v", rec.Body, err, want)
	}
	if !strings.Contains(rec.Body.String(), `"hosts_v4":12`) {
		t.Errorf("GET /v1/bypass = %s: want the sizes as top-level fields", rec.Body)
	}
}
