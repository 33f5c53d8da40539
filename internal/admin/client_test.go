package admin

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"moat/internal/store"
)

// With no daemon the command line serves its requests in-process: the
// answers, refusals and streams are the same as over the socket.
func TestLocalClientAnswersAsTheSocketDoes(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	sock, _ := serveSocket(t, f.svc)
	clients := map[string]*Client{"socket": sock, "local": LocalClient(f.svc)}
	for _, r := range []struct {
		method, path string
		body         any
		want         string // the refusal's message; "" for none
	}{
		{"GET", "/v1/hosts?class=black", nil, ""},
		{"GET", "/v1/hosts?class=purple", nil, `unknown class "purple" (want white, grey or black)`},
		{"POST", "/v1/hosts", map[string]any{"ip": "0.0.0.0/0", "class": "black"}, `0.0.0.0/0 covers more than a /16: making it black needs --force ("force": true in the API) if you mean it`},
		{"GET", "/v1/hosts/" + Escape("2001:db8::/32") + "/history", nil, ""},
		{"GET", "/v1/hosts/198.51.100.99/history", nil, "198.51.100.99: moat remembers nothing of it"},
		{"DELETE", "/v1/hosts/198.51.100.99", nil, "198.51.100.99: moat remembers nothing of it"},
		{"DELETE", "/v1/traps/nobody@example.org", nil, "traps: nobody@example.org is not a trap (see 'moat traps list')"},
		{"GET", "/v1/status", nil, ""},
	} {
		var answers []any
		for _, name := range []string{"socket", "local"} {
			var out any
			err := clients[name].Do(r.method, r.path, r.body, &out)
			if r.want == "" && err != nil || r.want != "" && (err == nil || err.Error() != r.want) {
				t.Errorf("%s: %s %s: %v, want %q", name, r.method, r.path, err, r.want)
			}
			answers = append(answers, out)
		}
		if !reflect.DeepEqual(answers[0], answers[1]) {
			t.Errorf("%s %s: the socket answered %v, the local client %v", r.method, r.path, answers[0], answers[1])
		}
	}

	// An export streams out and an import streams in, both ways alike.
	var exports []string
	for _, name := range []string{"socket", "local"} {
		var buf bytes.Buffer
		if err := clients[name].Do("GET", "/v1/export", nil, &buf); err != nil {
			t.Fatalf("%s: export: %v", name, err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		exports = append(exports, strings.Join(lines[1:], "\n")) // the header has the time
		var n Counts
		if err := clients[name].Do("POST", "/v1/import", &buf, &n); err != nil || n.Hosts != 6 {
			t.Errorf("%s: import of the export: %v, %v; want 6 hosts", name, n, err)
		}
	}
	if exports[0] != exports[1] || !strings.Contains(exports[0], `"type":"end"`) {
		t.Errorf("exports differ or have no end line:\nsocket %s\nlocal  %s", exports[0], exports[1])
	}
}

// The client hands the operator the API's own message whatever the
// status, the store's included.
func TestClientReturnsTheAPIsMessage(t *testing.T) {
	for _, cause := range []error{
		fmt.Errorf("%w: redis 192.0.2.1:6379 is unreachable", store.ErrUnavailable),
		errors.New("disk on fire"),
	} {
		f := newFixture(t)
		c, _ := serveSocket(t, serviceOver(t, failingStore{Store: f.st, err: cause}, f.clk))
		if err := c.Do("GET", "/v1/hosts", nil, nil); err == nil || err.Error() != cause.Error() {
			t.Errorf("GET /v1/hosts with the store failing: %v, want %q", err, cause)
		}
	}
}
