package traps

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
	"moat/internal/store/bolt"
)

func openStore(t *testing.T) *bolt.Store {
	t.Helper()
	clk := clock.NewFake(time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC))
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newSet(t *testing.T, st store.Store, configured ...string) *Set {
	t.Helper()
	s, err := New(st, configured)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConfiguredTrapsAreNormalised(t *testing.T) {
	s := newSet(t, openStore(t), "Trap@Example.ORG", " spam@example.net. ", `"honey"@example.com`)
	for _, a := range []string{"trap@example.org", "spam@example.net", "honey@example.com"} {
		if !s.Is(a) {
			t.Errorf("Is(%q) = false, want a trap", a)
		}
	}
	for _, a := range []string{"Trap@Example.ORG", "trap@example.com", "other@example.org", ""} {
		if s.Is(a) {
			t.Errorf("Is(%q) = true, want no trap", a)
		}
	}
}

func TestNewRejectsBadAddress(t *testing.T) {
	_, err := New(openStore(t), []string{"trap@example.org", "not an address"})
	if err == nil || !strings.Contains(err.Error(), `"not an address"`) {
		t.Errorf("New with a bad address: %v, want an error naming it", err)
	}
}

func TestAdd(t *testing.T) {
	st := openStore(t)
	s := newSet(t, st, "trap@example.org")
	n, err := s.Add("Bait@Example.NET")
	if err != nil {
		t.Fatal(err)
	}
	if n != "bait@example.net" {
		t.Errorf("Add returned %q, want the normalised address", n)
	}
	if !s.Is("bait@example.net") {
		t.Error("added trap is not a trap")
	}
	stored, _ := st.Traps()
	if !reflect.DeepEqual(stored, []string{"bait@example.net"}) {
		t.Errorf("store holds %q, want only the added trap (configured traps are not stored)", stored)
	}
	// A new set over the same store (a restart, another MX) has it too.
	if s2 := newSet(t, st); !s2.Is("bait@example.net") {
		t.Error("added trap lost on restart")
	}
	for _, bad := range []string{"", "postmaster", "no-at-sign", "a b@example.org", "@example.org"} {
		if _, err := s.Add(bad); err == nil {
			t.Errorf("Add(%q) succeeded, want an error", bad)
		} else if !strings.Contains(err.Error(), "local@domain") {
			t.Errorf("Add(%q): %v, want an error saying what an address looks like", bad, err)
		}
	}
}

func TestDel(t *testing.T) {
	st := openStore(t)
	s := newSet(t, st, "trap@example.org")
	s.Add("bait@example.net")

	n, err := s.Del("BAIT@example.net")
	if err != nil || n != "bait@example.net" {
		t.Fatalf("Del = %q, %v", n, err)
	}
	if s.Is("bait@example.net") {
		t.Error("deleted trap is still a trap")
	}
	if _, err := s.Del("bait@example.net"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Del of an absent trap: %v, want ErrNotFound", err)
	}

	_, err = s.Del("Trap@Example.org")
	if err == nil {
		t.Fatal("Del of a configured trap succeeded")
	}
	for _, w := range []string{"trap@example.org", "traps.addresses", "configuration"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Del of a configured trap: %q does not mention %q", err, w)
		}
	}
	if !s.Is("trap@example.org") {
		t.Error("configured trap gone after a refused Del")
	}
	if _, err := s.Del("nonsense"); err == nil || !strings.Contains(err.Error(), `"nonsense"`) {
		t.Errorf("Del(nonsense): %v, want an error naming the input", err)
	}
}

// TestConfiguredAndAddedSameAddress: a trap both configured and added is
// listed once, as configured, and still refuses Del.
func TestConfiguredAndAddedSameAddress(t *testing.T) {
	s := newSet(t, openStore(t), "trap@example.org")
	if _, err := s.Add("trap@example.org"); err != nil {
		t.Fatal(err)
	}
	l, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Trap{{Addr: "trap@example.org", Source: FromConfig}}; !reflect.DeepEqual(l, want) {
		t.Errorf("List = %+v, want %+v", l, want)
	}
	if _, err := s.Del("trap@example.org"); err == nil {
		t.Error("Del of a configured trap succeeded")
	}
}

func TestList(t *testing.T) {
	st := openStore(t)
	s := newSet(t, st, "zz@example.org", "trap@example.org")
	s.Add("bait@example.net")
	st.Add(HitCounter("trap@example.org"), 3)
	st.Add(HitCounter("bait@example.net"), 1)
	st.Add(HitCounter("gone@example.org"), 7) // a deleted trap's old hits
	l, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []Trap{
		{Addr: "bait@example.net", Source: FromStore, Hits: 1},
		{Addr: "trap@example.org", Source: FromConfig, Hits: 3},
		{Addr: "zz@example.org", Source: FromConfig, Hits: 0},
	}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("List = %+v\nwant %+v", l, want)
	}
}

func TestReloadSeesStoreChanges(t *testing.T) {
	st := openStore(t)
	s := newSet(t, st, "trap@example.org")
	// Another moat on the same store adds and removes traps.
	if err := st.AddTrap("remote@example.org"); err != nil {
		t.Fatal(err)
	}
	if s.Is("remote@example.org") {
		t.Fatal("trap visible before Reload: the test does not test Reload")
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if !s.Is("remote@example.org") || !s.Is("trap@example.org") {
		t.Error("Reload lost a trap")
	}
	st.DelTrap("remote@example.org")
	s.Reload()
	if s.Is("remote@example.org") {
		t.Error("trap deleted in the store still a trap after Reload")
	}
	if !s.Is("trap@example.org") {
		t.Error("configured trap lost on Reload")
	}
}

func TestHitCounter(t *testing.T) {
	if got := HitCounter("trap@example.org"); got != "trap_hits:trap@example.org" {
		t.Errorf("HitCounter = %q", got)
	}
	// One counter for all the bait of a domain, however many visitors
	// (one per IPv6 address) minted addresses.
	b := testBait(t, testKey)
	names := map[string]bool{}
	for i := 0; i < 100; i++ {
		a := b.Mint(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), t0)
		names[HitCounter(a)] = true
	}
	if len(names) != 1 || !names["trap_hits:b-*@example.org"] {
		t.Errorf("100 bait addresses count under %v, want one trap_hits:b-*@example.org", names)
	}
	if got := HitCounter("b-sales@example.org"); got != "trap_hits:b-sales@example.org" {
		t.Errorf("a trap that merely starts like bait counts under %q", got)
	}
}

func TestZeroSetIsEmpty(t *testing.T) {
	var s Set
	if s.Is("trap@example.org") {
		t.Error("zero Set has a trap")
	}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Errorf("zero Set List = %v, %v", l, err)
	}
}

// trapsDown is a store whose traps cannot be read while down is set: a
// Redis that does not answer.
type trapsDown struct {
	store.Store
	down bool
}

func (s *trapsDown) Traps() ([]string, error) {
	if s.down {
		return nil, store.ErrUnavailable
	}
	return s.Store.Traps()
}

// A reload replaces the configuration's traps and keeps the stored ones;
// with the store unreachable, the new configured list still applies.
func TestSetConfigured(t *testing.T) {
	st := &trapsDown{Store: openStore(t)}
	s := newSet(t, st, "old@example.org")
	if _, err := s.Add("added@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConfigured([]string{"New@Example.org"}); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"new@example.org": true, "added@example.org": true, "old@example.org": false} {
		if s.Is(addr) != want {
			t.Errorf("after SetConfigured: Is(%s) = %v, want %v", addr, !want, want)
		}
	}
	if _, err := s.Del("new@example.org"); err == nil {
		t.Error("Del of a configured trap worked; want it refused")
	}
	if err := s.SetConfigured([]string{"no address"}); err == nil {
		t.Error("SetConfigured with a bad address: no error")
	}
	if !s.Is("new@example.org") {
		t.Error("a refused SetConfigured changed the set")
	}

	st.down = true
	if err := s.SetConfigured([]string{"third@example.org"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("SetConfigured with the store down: %v, want ErrUnavailable", err)
	}
	for addr, want := range map[string]bool{"third@example.org": true, "added@example.org": true, "new@example.org": false} {
		if s.Is(addr) != want {
			t.Errorf("store down, after SetConfigured: Is(%s) = %v, want %v", addr, !want, want)
		}
	}
}

// With the store unreachable at start (Redis not up yet), the configured
// traps serve at once.
func TestNewWithStoreDown(t *testing.T) {
	s, err := New(&trapsDown{Store: openStore(t), down: true}, []string{"trap@example.org"})
	if err != nil {
		t.Fatalf("New with the store down: %v, want the configured traps to serve", err)
	}
	if !s.Is("trap@example.org") {
		t.Error("configured trap not served with the store down")
	}
}
