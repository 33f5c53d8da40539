package classify

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/reputation"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/store/redis"
	"moat/internal/store/redis/redistest"
	"moat/internal/traps"
)

// engineOver is an engine with network and AS escalation over st.
func engineOver(t *testing.T, st store.Store, clk clock.Clock, asn *reputation.ASNTable) *Engine {
	t.Helper()
	ts, err := traps.New(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := greylist.New(greylist.Config{MinRetry: time.Minute, RetryWindow: 24 * time.Hour, PassTTL: whiteTTL}, st, clk)
	e := New(Config{BlackTTL: blackTTL, WhiteTTL: whiteTTL, GreyTTL: greyTTL}, st, clk, g, ts)
	e.SetReputation(Reputation{ASN: asn, Nets: reputation.Escalation{Threshold: 3, ASNThreshold: 4, Window: time.Hour, TTL: 6 * time.Hour}})
	return e
}

// Two MX hosts sharing a Redis count black hosts together: two found on
// one and one on the other make three in the network, which is escalated
// on both; the AS needs a fourth, from either.
func TestEscalationSharedByMX(t *testing.T) {
	srv := redistest.Start(t)
	clk := clock.NewFake(t0)
	asn, err := reputation.ParseASN(strings.NewReader("192.0.2.0\t192.0.2.255\t64500\tZZ\tEXAMPLE-NET\n198.51.100.0\t198.51.100.255\t64500\tZZ\tEXAMPLE-NET\n"))
	if err != nil {
		t.Fatal(err)
	}
	open := func() *Engine {
		st, err := redis.Open(srv.URL(0), redis.Options{Prefix: "shared:", Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return engineOver(t, st, clk, asn)
	}
	a, b := open(), open()
	for _, step := range []struct {
		eng  *Engine
		host string
	}{{a, "192.0.2.1"}, {a, "192.0.2.2"}, {b, "192.0.2.3"}} {
		if v, _ := b.Classify(ip("192.0.2.50")); v.Class != store.Grey {
			t.Fatalf("the network is %v before its third black host: %+v", v.Class, v)
		}
		if err := step.eng.EarlyTalker(ip(step.host), "early talker"); err != nil {
			t.Fatal(err)
		}
	}
	for name, e := range map[string]*Engine{"A": a, "B": b} {
		v := eventually(t, e, "192.0.2.50", store.Black)
		if !strings.HasPrefix(v.Reason, "network escalation: 3 black hosts in 192.0.2.0/24") {
			t.Errorf("MX %s after three black hosts, two of them seen by A and one by B: %+v", name, v)
		}
	}
	if v, _ := a.Classify(ip("198.51.100.9")); v.Class != store.Grey {
		t.Fatalf("the AS is black after three hosts: %+v", v)
	}
	if err := a.EarlyTalker(ip("198.51.100.1"), "early talker"); err != nil {
		t.Fatal(err)
	}
	if v := eventually(t, b, "198.51.100.9", store.Black); !strings.Contains(v.Reason, "AS64500") {
		t.Errorf("B after the fourth black host in AS64500, on A: %+v", v)
	}
}

// eventually classifies addr on e until it is of class want, for up to
// 10s: another MX's write reaches this one through Redis, not at once.
func eventually(t *testing.T, e *Engine, addr string, want store.Class) Verdict {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := e.Classify(ip(addr))
		if err == nil && v.Class == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still %+v (%v) after 10s, want %v", addr, v, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The counts are the store's: neither a reload of the reputation settings
// nor a restart of moat starts them again.
func TestEscalationCountsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moat.db")
	clk := clock.NewFake(t0)
	st, err := bolt.Open(path, bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	e := engineOver(t, st, clk, nil)
	e.EarlyTalker(ip("192.0.2.1"), "early talker")
	e = engineOver(t, st, clk, nil) // a reload: SetReputation again
	e.EarlyTalker(ip("192.0.2.2"), "early talker")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Minute)
	st, err = bolt.Open(path, bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e = engineOver(t, st, clk, nil)
	if v, _ := e.Classify(ip("192.0.2.50")); v.Class != store.Grey {
		t.Fatalf("escalated after two hosts: %+v", v)
	}
	e.EarlyTalker(ip("192.0.2.3"), "early talker")
	if v, _ := e.Classify(ip("192.0.2.50")); v.Class != store.Black {
		t.Errorf("the third black host, after a reload and a restart, did not escalate: %+v", v)
	}
}
