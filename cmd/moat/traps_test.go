package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/traps"
)

// TestTrapsCommandsWithoutDaemon: with moat stopped, "traps mine" records
// a log's rejections in the store (for hosts moat has a record of),
// "traps candidates" lists what qualifies, and "traps decode" names the
// harvester of a bait address.
func TestTrapsCommandsWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "[traps]\ndomains = [\"example.org\"]\n[bait]\ndomain = \"example.org\"\n")

	mine := func() string {
		t.Helper()
		out, err := moat(t, cfg, "traps", "mine", filepath.Join("..", "..", "internal", "traps", "testdata", "postfix-mail.log"))
		if err != nil {
			t.Fatalf("traps mine: %v\n%s", err, out)
		}
		return out
	}
	// Moat never saw the hosts in this log: their lines count for nothing.
	if out := mine(); !strings.Contains(out, "7 rejections recorded, 0 candidates now") {
		t.Errorf("traps mine said %q", out)
	}
	for _, h := range []string{"198.51.100.23", "2001:db8:5::17", "192.0.2.145"} {
		if out, err := moat(t, cfg, "hosts", "black", h); err != nil {
			t.Fatalf("hosts black %s: %v\n%s", h, err, out)
		}
	}
	if out := mine(); !strings.Contains(out, "7 rejections recorded, 1 candidates now") {
		t.Errorf("traps mine said %q", out)
	}
	out, err := moat(t, cfg, "traps", "candidates", "--json")
	if err != nil {
		t.Fatalf("traps candidates: %v\n%s", err, out)
	}
	var cs []traps.Evidence
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 1 || cs[0].Addr != "sales2@example.org" {
		t.Fatalf("candidates = %s (%v)", out, err)
	}

	// The key was made at the first start; mint with it as the page would.
	key, err := os.ReadFile(filepath.Join(dir, "data", "bait.key"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := traps.NewBait(key, "example.org")
	a := b.Mint(netip.MustParseAddr("192.0.2.31"), time.Date(2026, 3, 3, 6, 25, 0, 0, time.UTC))
	out, err = moat(t, cfg, "traps", "decode", a)
	if err != nil || !strings.Contains(out, "harvested by 192.0.2.31 at ") {
		t.Fatalf("traps decode: %q, %v", out, err)
	}
	if _, err := moat(t, cfg, "traps", "decode", "sales@example.org"); err == nil || !strings.Contains(err.Error(), "not a bait address") {
		t.Errorf("decode of a plain address: %v", err)
	}
	out, err = moat(t, cfg, "traps", "bait-snippet", "--url", "https://www.example.org/team/")
	if err != nil || !strings.Contains(out, `href="https://www.example.org/team/"`) {
		t.Errorf("bait-snippet: %q, %v", out, err)
	}
}
