package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/store/redis/redistest"
)

// fillStore writes some of everything, expiring a year from now (the
// commands run on the real clock).
func fillStore(t *testing.T, st store.Store) {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	exp := now.Add(365 * 24 * time.Hour)
	for _, h := range []store.Host{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Class: store.White, Reason: "greylist retry", First: now.Add(-time.Hour), Last: now, Expires: exp},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Class: store.Black, Reason: "operator"},
		{Prefix: netip.MustParsePrefix("2001:db8::5/128"), Class: store.Black, Reason: "trap hit <t@example.org>", First: now, Last: now, Expires: exp},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), Class: store.Grey, Reason: "ünïcode \"quoted\""},
	} {
		if err := st.PutHost(h); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		tr := store.Triplet{Net: netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)), Sender: fmt.Sprintf("s%d@example.org", i), Rcpt: "r@example.net"}
		if err := st.PutTriplet(tr, store.Attempt{First: now, Last: now.Add(time.Duration(i) * time.Second), Count: uint32(i + 1), Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{"a@example.org", "b@example.org"} {
		if err := st.AddTrap(a); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range map[string]int64{"tarpit_seconds": 1234, "trap_hits:<a@example.org>": 3, "neg": -7} {
		if err := st.Add(name, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		kind, key, val string
		exp            time.Time
	}{
		{"candidate", "x@example.org", "3", exp},
		{"candidate", "y@example.org", "", time.Time{}},
		{"karma", "192.0.2.1", "\x00\xff binary", exp},
	} {
		if err := st.Put(r.kind, r.key, []byte(r.val), r.exp); err != nil {
			t.Fatal(err)
		}
	}
}

// contentLines is an export without its header (which has the time it
// was made), sorted: two stores with the same content give the same.
func contentLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], `{"type":"moat-export","version":1`) || !strings.HasPrefix(lines[len(lines)-1], `{"type":"end"`) {
		t.Fatalf("%s: no header or end line:\n%s", path, b)
	}
	lines = lines[1:]
	slices.Sort(lines)
	return lines
}

// An export from bolt imports into Redis, whose export imports into a new
// bolt file: every entry arrives unchanged, and the three exports hold
// the same lines.
func TestExportImportRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	boltA := writeConfig(t, filepath.Join(dir, "a"), "")
	red := writeConfig(t, filepath.Join(dir, "r"), fmt.Sprintf("store = %q\n[redis]\nprefix = \"roundtrip:\"\n", srv.URL(0)))
	boltB := writeConfig(t, filepath.Join(dir, "b"), "")

	st, err := bolt.Open(filepath.Join(dir, "a", "data", "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	f1, f2, f3 := filepath.Join(dir, "1.jsonl"), filepath.Join(dir, "2.jsonl"), filepath.Join(dir, "3.jsonl")
	runMoat(t, boltA, "export", f1)
	if out := runMoat(t, red, "import", f1); !strings.Contains(out, "imported 4 hosts, 2 traps, 3 counters, 300 triplets, 3 records") {
		t.Errorf("import into redis said %q", out)
	}
	runMoat(t, red, "export", f2)
	runMoat(t, boltB, "import", f2)
	runMoat(t, boltB, "export", f3)

	want := contentLines(t, f1)
	if len(want) != 4+2+3+300+3+1 {
		t.Errorf("export of the bolt store has %d lines, want %d", len(want), 4+2+3+300+3+1)
	}
	for _, f := range []string{f2, f3} {
		if got := contentLines(t, f); !slices.Equal(got, want) {
			t.Errorf("%s differs from the first export:\n got %q\nwant %q", filepath.Base(f), got, want)
		}
	}

	// Importing again changes nothing: counters are set, not added to.
	runMoat(t, boltB, "import", f1)
	runMoat(t, boltB, "export", f3)
	if got := contentLines(t, f3); !slices.Equal(got, want) {
		t.Errorf("a second import changed the store:\n got %q\nwant %q", got, want)
	}

	// Export to standard output.
	if out := runMoat(t, red, "export"); strings.Count(out, "\n") != len(want)+1 {
		t.Errorf("export to stdout has %d lines, want %d", strings.Count(out, "\n"), len(want)+1)
	}
}
