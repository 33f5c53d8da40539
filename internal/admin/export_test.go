package admin

import (
	"strings"
	"testing"
)

// Import refuses what is not a whole export file, naming the line, and the
// API answers such a file 400: the file is wrong, not moat.
func TestImportRefuses(t *testing.T) {
	header := `{"type":"moat-export","version":1}` + "\n"
	host := `{"type":"host","prefix":"192.0.2.1/32","class":"black"}` + "\n"
	end1 := `{"type":"end","counts":{"hosts":1,"traps":0,"counters":0,"triplets":0,"records":0}}` + "\n"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "empty input"},
		{"no header", host + end1, "line 1: not a moat export file"},
		{"newer version", `{"type":"moat-export","version":99}` + "\n", "line 1: format version 99"},
		{"truncated", header + host, "without its end line"},
		{"wrong count", header + host + host + end1, "line 4: the end line counts"},
		{"after end", header + host + end1 + host, "line 4: data after the end line"},
		{"bad json", header + "{nope\n", "line 2: not a JSON object"},
		{"bad prefix", header + `{"type":"host","prefix":"300.1.1.1/32","class":"black"}` + "\n", "line 2: host"},
		{"bad class", header + `{"type":"host","prefix":"192.0.2.1/32","class":"purple"}` + "\n", "line 2: host 192.0.2.1/32"},
		{"bad triplet id", header + `{"type":"triplet","id":"xyz"}` + "\n", "line 2: store: triplet id"},
		{"unknown type", header + `{"type":"mystery"}` + "\n", `line 2: unknown type "mystery"`},
		{"trap without address", header + `{"type":"trap"}` + "\n", "line 2: trap without address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := Import(f.st, strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Import = %v, want an error saying %q", err, tc.want)
			}
			var e apiError
			if code := call(t, f.svc.Handler(), "POST", "/v1/import", tc.in, &e); code != 400 || !strings.Contains(e.Error, tc.want) {
				t.Errorf("POST /v1/import: %d %q, want 400 saying %q", code, e.Error, tc.want)
			}
		})
	}
}
