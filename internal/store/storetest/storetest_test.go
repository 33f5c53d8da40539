package storetest_test

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/store/storetest"
)

// The suite is what stands between a store and the daemon: a store that
// gets a rule of store.go wrong must fail it, at the subtest that checks
// the rule. Each broken store below is a correct one (bolt.Memory) with
// one rule broken; the suite runs over it in a child process (a failing
// subtest would fail this test too) and must fail where it should.

// breakEnv names the broken store the child runs the suite over; set, the
// test is the child.
const breakEnv = "MOAT_STORETEST_BREAK"

// broken are stores that each get one rule wrong, and the subtest that
// must catch it.
var broken = map[string]struct {
	wrap   func(store.Store) store.Store
	caught string
}{
	// Kept for ever: an entry's expiry is the store's to honour.
	"never-expires": {func(s store.Store) store.Store { return neverExpires{s} }, "HostExpiry"},
	// The source of a class is lost: the precedence of evidence rests on it.
	"drops-source": {func(s store.Store) store.Store { return dropsSource{s} }, "HostRoundTrip"},
	// A counter that only grows.
	"ignores-negative": {func(s store.Store) store.Store { return ignoresNegative{s} }, "Counters"},
	// A network entry shadows the host entry inside it.
	"least-specific": {func(s store.Store) store.Store { return leastSpecific{s} }, "LookupMostSpecific"},
}

func TestSuiteCatchesBrokenStores(t *testing.T) {
	if name := os.Getenv(breakEnv); name != "" {
		// The child: the suite over the store name breaks.
		wrap := func(s store.Store) store.Store { return s }
		if b, ok := broken[name]; ok {
			wrap = b.wrap
		}
		storetest.Run(t, func(t *testing.T, c *clock.Fake) store.Store {
			return wrap(bolt.Memory(bolt.Options{Clock: c}))
		})
		return
	}
	child := func(name string, args ...string) ([]byte, error) {
		cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestSuiteCatchesBrokenStores$"}, args...)...)
		cmd.Env = append(os.Environ(), breakEnv+"="+name)
		return cmd.CombinedOutput()
	}
	for name, b := range broken {
		t.Run(name, func(t *testing.T) {
			out, err := child(name, "-test.v")
			if err == nil {
				t.Fatalf("the suite passed a store that is %s:\n%s", name, tail(out))
			}
			if !strings.Contains(string(out), "--- FAIL: TestSuiteCatchesBrokenStores/"+b.caught+" ") {
				t.Errorf("the suite did not fail %s at %s:\n%s", name, b.caught, tail(out))
			}
		})
	}
	// And the store the broken ones are made of passes it.
	if out, err := child("none"); err != nil {
		t.Errorf("the suite fails the correct store: %v\n%s", err, tail(out))
	}
}

func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

type neverExpires struct{ store.Store }

func (s neverExpires) PutHost(h store.Host) error {
	h.Expires = time.Time{}
	return s.Store.PutHost(h)
}

type dropsSource struct{ store.Store }

func (s dropsSource) PutHost(h store.Host) error {
	h.Source = 0
	return s.Store.PutHost(h)
}

type ignoresNegative struct{ store.Store }

func (s ignoresNegative) Add(name string, delta int64) error {
	if delta < 0 {
		return nil
	}
	return s.Store.Add(name, delta)
}

type leastSpecific struct{ store.Store }

// Lookup answers with the widest entry that holds addr.
func (s leastSpecific) Lookup(addr netip.Addr) (store.Host, bool, error) {
	var best store.Host
	found := false
	err := s.Store.Hosts(func(h store.Host) bool {
		if h.Prefix.Contains(addr.Unmap()) && (!found || h.Prefix.Bits() < best.Prefix.Bits()) {
			best, found = h, true
		}
		return true
	})
	return best, found, err
}
