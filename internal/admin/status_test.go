package admin

import (
	"moat/internal/ledger"
	"moat/internal/store"
	"moat/internal/traps"
	"reflect"
	"testing"
	"time"
)

func TestStatus(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	f.svc.AddTrap("bait@example.net")
	f.st.Add(traps.HitCounter("trap@example.org"), 3)
	f.st.Add(traps.HitCounter("bait@example.net"), 2)
	f.st.Add("tarpit_seconds", 100)
	f.tarpitSession(t, "192.0.2.50", ledger.Deferred, ledger.Deferred, ledger.Dropped)
	f.tarpitSession(t, "192.0.2.51", ledger.Refused)

	st, err := f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := Status{
		Hosts:         map[string]int{"white": 2, "grey": 1, "black": 3},
		Traps:         2,
		TrapHits:      5,
		TopTraps:      []TrapHits{{Addr: "trap@example.org", Hits: 3}, {Addr: "bait@example.net", Hits: 2}},
		TarpitSeconds: 100,
		Messages:      map[string]int64{"dropped": 1, "deferred": 2, "refused": 1},
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Status = %+v\nwant %+v", st, want)
	}

	f.svc.Live = func() Live {
		return Live{Connections: 7, TarpitHeld: 4, TarpitSeconds: 2.5, TarpitRefused: 1,
			Sessions: map[string]int64{"white": 3}, Refused: map[string]int64{"tarpit_full": 1}, StoreErrors: 9,
			Mode: "observe", Would: map[string]int64{"greylisted": 2, "tarpit (trap)": 1}}
	}
	st, err = f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	want.Running, want.Connections, want.TarpitHeld, want.TarpitRefused = true, 7, 4, 1
	want.TarpitSeconds = 102.5
	want.Sessions, want.Refused, want.StoreErrors = map[string]int64{"white": 3}, map[string]int64{"tarpit_full": 1}, 9
	want.Mode, want.Would = "observe", map[string]int64{"greylisted": 2, "tarpit (trap)": 1}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("live Status = %+v\nwant %+v", st, want)
	}
}

func TestHandlerStatus(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	var st Status
	if code := call(t, f.svc.Handler(), "GET", "/v1/status", nil, &st); code != 200 {
		t.Fatalf("GET status: %d", code)
	}
	if st.Running || st.Traps != 1 || !reflect.DeepEqual(st.Hosts, map[string]int{"white": 2, "grey": 1, "black": 3}) {
		t.Errorf("status = %+v", st)
	}
}

// downStore is a store whose shared backend is unreachable.
type downStore struct {
	store.Store
	since time.Time
}

func (d downStore) Down() (bool, time.Time) { return true, d.since }

func (d downStore) Hosts(func(store.Host) bool) error { return store.ErrUnavailable }

// When the shared store is down, status still answers, and says so.
func TestStatusReportsStoreOutage(t *testing.T) {
	f := newFixture(t)
	since := f.clk.Now().Add(-time.Minute)
	svc := serviceOver(t, downStore{Store: f.st, since: since}, f.clk)
	svc.Live = func() Live { return Live{Connections: 3} }
	got, err := svc.Status()
	if err != nil {
		t.Fatalf("status with the store down: %v", err)
	}
	if got.StoreDown == nil || !got.StoreDown.Equal(since) || got.Connections != 3 {
		t.Fatalf("status = %+v, want store down since %v and the live figures", got, since)
	}
}

func TestTopTraps(t *testing.T) {
	counters := map[string]int64{
		"tarpit_seconds":             900,
		"trap_hits:a@example.org":    3,
		"trap_hits:b@example.org":    7,
		"trap_hits:c@example.org":    3,
		"trap_hits:zero@example.org": 0,
	}
	got := topTraps(counters, 2)
	want := []TrapHits{{"b@example.org", 7}, {"a@example.org", 3}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("topTraps = %v, want %v", got, want)
	}
	if got := topTraps(counters, 10); len(got) != 3 {
		t.Errorf("topTraps lists %d traps, want the 3 with hits", len(got))
	}
}
