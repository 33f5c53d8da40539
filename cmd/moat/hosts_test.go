package main

import (
	"strings"
	"testing"
)

// "moat hosts black" with a CIDR says which network it stored, and a
// network too wide to be meant needs --force.
func TestHostsBlackCIDR(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), "")
	if out := runMoat(t, cfg, "hosts", "black", "192.0.2.7/24"); out != "192.0.2.0/24 is black\n" {
		t.Errorf("hosts black 192.0.2.7/24 printed %q, want the stored network", out)
	}
	if _, err := moat(t, cfg, "hosts", "black", "0.0.0.0/0"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("hosts black 0.0.0.0/0: %v, want a refusal naming --force", err)
	}
	if list := runMoat(t, cfg, "hosts", "list"); strings.Contains(list, "0.0.0.0/0") {
		t.Errorf("the refused network was stored:\n%s", list)
	}
	if out := runMoat(t, cfg, "hosts", "black", "--force", "10.0.0.0/8"); out != "10.0.0.0/8 is black\n" {
		t.Errorf("hosts black --force 10.0.0.0/8 printed %q", out)
	}
}
