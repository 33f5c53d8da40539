package main

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/ledger"
	"moat/internal/store/bolt"
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

// "moat hosts show" lists what a black host's messages were told in the
// tarpit, a message a line with its envelope; "hosts list" and "status"
// count them.
func TestHostsShowTold(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "")
	runMoat(t, cfg, "hosts", "black", "192.0.2.7")
	st, err := bolt.Open(filepath.Join(dir, "data", "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(st, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	key := new(int)
	for _, told := range []ledger.Told{ledger.Deferred, ledger.Deferred} {
		l.Mail(key, "bob@sender.example")
		for _, r := range []string{"a@example.org", "b@example.org", "c@example.org", "d\tx@example.org"} {
			l.Rcpt(key, r)
		}
		l.Told(key, told)
	}
	if err := l.Record(key, netip.MustParseAddr("192.0.2.7")); err != nil {
		t.Fatal(err)
	}
	st.Close()

	show := runMoat(t, cfg, "hosts", "show", "192.0.2.7")
	for _, want := range []string{"in the tarpit: 2 deferred", "4xx, deferred", "<bob@sender.example>", "a@example.org, b@example.org, c@example.org (+1 more)"} {
		if !strings.Contains(show, want) {
			t.Errorf("hosts show lacks %q:\n%s", want, show)
		}
	}
	if list := runMoat(t, cfg, "hosts", "list", "--class", "black"); !strings.Contains(list, "2 deferred") {
		t.Errorf("hosts list --class black does not count the deferred messages:\n%s", list)
	}
	if status := runMoat(t, cfg, "status"); !strings.Contains(status, "0 dropped (told 250), 2 deferred (4xx), 0 refused (5xx)") {
		t.Errorf("status does not count the messages:\n%s", status)
	}
}
