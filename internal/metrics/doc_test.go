package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// names returns the names of moat's own metrics in the registry.
func names(t *testing.T) map[string]bool {
	t.Helper()
	m := New(Options{Live: func() Live {
		return Live{Refused: map[string]int64{"max_conns": 0}, Would: map[string]int64{"greylisted": 0}}
	}})
	// A histogram vector has no series, and so no name in a gathering,
	// until it is used.
	m.store.latency[opLookup].Observe(0)
	m.store.errors[opLookup].Add(0)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "moat_") {
			out[mf.GetName()] = true
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d moat metrics gathered", len(out))
	}
	return out
}

// Every metric moat exports is listed with its meaning in the operator's
// documentation, so a new one cannot ship undocumented.
func TestOperationsListsEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range names(t) {
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("docs/operations.md has no row for %s", name)
		}
	}
}

var metricName = regexp.MustCompile(`moat_[a-z_]+`)

// The example dashboard and alert rules read metrics that exist.
func TestExamplesReadExistingMetrics(t *testing.T) {
	have := names(t)
	for _, file := range []string{"../../docs/grafana-dashboard.json", "../../docs/alerts.yml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		used := metricName.FindAllString(string(b), -1)
		if len(used) < 3 {
			t.Errorf("%s names only %d metrics", file, len(used))
		}
		for _, n := range used {
			base := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && have[b] {
					base = b
				}
			}
			if !have[base] {
				t.Errorf("%s reads %s, which moat does not export", file, n)
			}
		}
	}
}
