package bypass

import (
	"net/netip"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/store"
	"moat/internal/store/redis"
	"moat/internal/store/redis/redistest"
)

// newRedisEngine is one MX's engine over a shared Redis. Its cache
// answers for an hour, so only the change channel can tell it of another
// MX's change in time.
func newRedisEngine(t *testing.T, url string) *classify.Engine {
	t.Helper()
	st, err := redis.Open(url, redis.Options{Prefix: "bypass-test:", CacheTTL: time.Hour, HealthInterval: time.Hour, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return engineOver(t, st, clock.Real{}, classify.Config{})
}

// eventually waits for what travels through Redis's change channel.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two MX hosts share one Redis, each with its own kernel table: a host
// made white on one enters the other's set, and a host that turns black
// on one leaves the other's set, through the change channel.
func TestSharedStoreKeepsEveryMXInStep(t *testing.T) {
	srv := redistest.Start(t)
	mx1, mx2 := newRig(t), newRig(t)
	eng1, eng2 := newRedisEngine(t, srv.URL(0)), newRedisEngine(t, srv.URL(0))
	newMirror(t, mx1, eng1)
	newMirror(t, mx2, eng2)
	t.Cleanup(func() { eng2.Store().(store.Watcher).WatchHosts(nil) })

	// mx2 has looked at the host and cached "grey".
	if v, err := eng2.Classify(addr("127.0.0.5")); err != nil || v.Class != store.Grey {
		t.Fatalf("mx2: unknown host is %s (%v)", v.Class, err)
	}
	if _, err := eng1.Accepted(addr("127.0.0.5"), "a@example.com", "greylist retry"); err != nil {
		t.Fatal(err)
	}
	if got := mx1.reach(t, "127.0.0.5"); got != "bypass" {
		t.Errorf("mx1: the host it whitened reached %s", got)
	}
	eventually(t, "mx2's set does not take the host mx1 whitened", func() bool { return mx2.reach(t, "127.0.0.5") == "bypass" })

	if err := eng1.Blacklist(addr("127.0.0.5"), store.SourceTrap, "trap hit <"+trapAddr+">"); err != nil {
		t.Fatal(err)
	}
	if got := mx1.reach(t, "127.0.0.5"); got != "moat" {
		t.Errorf("mx1: the host it blacklisted reached %s", got)
	}
	eventually(t, "mx2's set keeps the host mx1 blacklisted", func() bool { return mx2.reach(t, "127.0.0.5") == "moat" })

	// A network the operator whitens on mx2 reaches mx1's set.
	if err := eng2.SetClass(netip.MustParsePrefix("127.0.9.0/24"), store.White, "operator"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "mx1's set does not take mx2's white network", func() bool { return mx1.reach(t, "127.0.9.1") == "bypass" })
}
