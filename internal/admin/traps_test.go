package admin

import (
	"moat/internal/traps"
	"reflect"
	"strings"
	"testing"
)

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
	e = apiError{}
	if code := call(t, h, "DELETE", "/v1/traps/nobody@example.org", nil, &e); code != 404 || !strings.Contains(e.Error, "nobody@example.org is not a trap") {
		t.Errorf("DELETE unknown trap: %d %q, want 404 saying it is not a trap", code, e.Error)
	}
	e = apiError{}
	if code := call(t, h, "DELETE", "/v1/traps/nobody", nil, &e); code != 400 || !strings.Contains(e.Error, `"nobody" is not an address`) {
		t.Errorf("DELETE a non-address: %d %q, want 400 saying it is not an address", code, e.Error)
	}
	tl = nil
	call(t, h, "GET", "/v1/traps", nil, &tl)
	if len(tl) != 1 || tl[0].Addr != "trap@example.org" {
		t.Errorf("traps left: %+v", tl)
	}
}
