package admin

import (
	"moat/internal/ledger"
	"moat/internal/store"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

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
	if code := call(t, h, "DELETE", "/v1/hosts/192.0.2.0/24", nil, &e); code != 404 || e.Error != "192.0.2.0/24: moat remembers nothing of it" {
		t.Errorf("DELETE again: %d %q, want 404 saying moat remembers nothing of it", code, e.Error)
	}
	e = apiError{}
	if code := call(t, h, "DELETE", "/v1/hosts/"+Escape("2001:db8::/33"), nil, &e); code != 404 {
		t.Errorf("DELETE a network never stored: %d %q, want 404", code, e.Error)
	}
	e = apiError{}
	if code := call(t, h, "DELETE", "/v1/hosts/not-an-ip", nil, &e); code != 400 || !strings.Contains(e.Error, "not-an-ip") {
		t.Errorf("DELETE a bad target: %d %q, want 400 naming it", code, e.Error)
	}
}

func TestHostsShowTarpitSeconds(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	if err := f.svc.Ledger.Held(netip.MustParseAddr("192.0.2.10"), 90*time.Second); err != nil {
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

// What each verdict cost: "hosts list" counts a black host's messages by
// what the tarpit told them, and "hosts show" lists its sessions with
// their envelopes, cleaned.
func TestHostsShowWhatTheyWereTold(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	f.tarpitSession(t, "192.0.2.10", ledger.Deferred, ledger.Deferred)
	f.tarpitSession(t, "192.0.2.10", ledger.Refused)
	hs, err := f.svc.Hosts("black")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		want := [3]int64{}
		if h.IP == "192.0.2.10" {
			want = [3]int64{0, 2, 1}
		}
		if got := [3]int64{h.Dropped, h.Deferred, h.Refused}; got != want {
			t.Errorf("%s: dropped, deferred, refused = %v, want %v", h.IP, got, want)
		}
	}
	var hh HostHistory
	if code := call(t, f.svc.Handler(), "GET", "/v1/hosts/192.0.2.10", nil, &hh); code != 200 {
		t.Fatalf("GET host: %d", code)
	}
	if hh.Told == nil || len(hh.Told.Sessions) != 2 || hh.Told.Deferred != 2 || hh.Told.Refused != 1 {
		t.Fatalf("told = %+v, want two sessions, 2 deferred, 1 refused", hh.Told)
	}
	m := hh.Told.Sessions[0].Messages[0]
	if m.Told != "deferred" || m.Sender != "bob@sender.example" || strings.Join(m.Rcpts, " ") != `alice@example.org carol\u000d\u000a@example.org` {
		t.Errorf("first message %+v", m)
	}
	// A host moat remembers only by its ledger record is still shown.
	f.tarpitSession(t, "198.51.100.99", ledger.Dropped)
	if _, err := f.svc.HostHistory("198.51.100.99"); err != nil {
		t.Errorf("a host with only a ledger record: %v", err)
	}
	// And listed, with its class as classify has it (a config blacklist
	// entry has no store entry), counted once.
	all, err := f.svc.Hosts("")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range all {
		if h.IP == "198.51.100.99" {
			n++
			if h.Class != "grey" || h.Dropped != 1 {
				t.Errorf("ledger-only host listed as %+v", h)
			}
		}
		if h.IP == "192.0.2.10" && h.Deferred != 2 {
			t.Errorf("192.0.2.10 listed as %+v", h)
		}
	}
	if n != 1 {
		t.Errorf("the ledger-only host is listed %d times, want once", n)
	}
	if bl, _ := f.svc.Hosts("black"); len(bl) != len(hs) {
		t.Errorf("hosts --class black: %d hosts, want the %d black ones", len(bl), len(hs))
	}
}
