package admin

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/store"
)

func TestHandlerFeedbackAndHistory(t *testing.T) {
	f := newFixture(t)
	h := f.svc.Handler()
	// 192.0.2.1 passes the greylist and a message is accepted: white.
	eng := f.svc.Eng
	eng.Rcpt(mustIP(t, "192.0.2.1"), "a@sender.example", "u@example.org")
	f.clk.Advance(5 * time.Minute)
	d, _ := eng.Rcpt(mustIP(t, "192.0.2.1"), "a@sender.example", "u@example.org")
	if d.Action != classify.Pass {
		t.Fatalf("greylist retry: %+v", d)
	}
	if v, err := eng.Accepted(mustIP(t, "192.0.2.1"), "a@sender.example", d.Reason); err != nil || v.Class != store.White {
		t.Fatalf("accepted message: %+v %v", v, err)
	}
	post := func(body FeedbackRequest, wantClass string) classify.FeedbackResult {
		t.Helper()
		var res classify.FeedbackResult
		if code := call(t, h, "POST", "/v1/feedback", body, &res); code != 200 || res.Class != wantClass {
			t.Fatalf("POST /v1/feedback %+v: %d %+v, want class %s", body, code, res, wantClass)
		}
		return res
	}
	post(FeedbackRequest{IP: "192.0.2.1", Verdict: "spam", Score: 12.5, Source: "my-filter"}, "grey")
	r := post(FeedbackRequest{IP: "192.0.2.1", Verdict: "spam", Source: "my-filter"}, "black")
	if !r.Changed || !strings.Contains(r.Reason, "spam from api:my-filter") {
		t.Errorf("second spam: %+v", r)
	}
	post(FeedbackRequest{IP: "192.0.2.2", Verdict: "ham"}, "grey")

	var hh HostHistory
	if code := call(t, h, "GET", "/v1/hosts/192.0.2.1/history", nil, &hh); code != 200 {
		t.Fatalf("GET history: %d", code)
	}
	if hh.Class != "black" || hh.Karma == nil || *hh.Karma > -1.9 || len(hh.History) != 3 {
		t.Fatalf("history %+v", hh)
	}
	var classes []string
	for _, e := range hh.History {
		classes = append(classes, e.Class)
	}
	if strings.Join(classes, ",") != "white,grey,black" || !strings.Contains(hh.History[0].Reason, "greylist") ||
		!strings.Contains(hh.History[1].Reason, "score 12.5") {
		t.Errorf("history %+v", hh.History)
	}
	// A host moat knows nothing of is not found, and the answer says so.
	var e apiError
	if code := call(t, h, "GET", "/v1/hosts/192.0.2.99/history", nil, &e); code != 404 || e.Error != "192.0.2.99: moat remembers nothing of it" {
		t.Errorf("unknown host: %d %q, want 404 saying moat remembers nothing of it", code, e.Error)
	}
	// A host in a network moat knows is found by the network's entry.
	f.put(t, "203.0.113.0/24", store.Grey, "greylisted: first attempt")
	if code := call(t, h, "GET", "/v1/hosts/203.0.113.5/history", nil, &hh); code != 200 || hh.Entry == nil || hh.Entry.IP != "203.0.113.0/24" {
		t.Errorf("host in a known network: %d %+v", code, hh)
	}
	// A network's entry and history.
	f.put(t, "198.51.100.0/24", store.Black, "operator")
	if code := call(t, h, "GET", "/v1/hosts/"+Escape("198.51.100.0/24")+"/history", nil, &hh); code != 200 || hh.Class != "black" || hh.IP != "198.51.100.0/24" {
		t.Errorf("network: %d %+v", code, hh)
	}

	for _, bad := range []FeedbackRequest{{IP: "nope", Verdict: "spam"}, {IP: "192.0.2.1", Verdict: "maybe"}} {
		var e apiError
		if code := call(t, h, "POST", "/v1/feedback", bad, &e); code != 400 || e.Error == "" {
			t.Errorf("POST %+v: %d %+v, want 400 with an error", bad, code, e)
		}
	}
}

func mustIP(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
