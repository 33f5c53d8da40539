package admin

import (
	"path/filepath"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/traps"
)

// downStore is a store whose shared backend is unreachable.
type downStore struct {
	store.Store
	since time.Time
}

func (d downStore) Down() (bool, time.Time) { return true, d.since }

func (d downStore) Hosts(func(store.Host) bool) error { return store.ErrUnavailable }

// When the shared store is down, status still answers, and says so.
func TestStatusReportsStoreOutage(t *testing.T) {
	c := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	since := c.Now().Add(-time.Minute)
	st := downStore{Store: b, since: since}
	ts, err := traps.New(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := greylist.New(greylist.Config{MinRetry: time.Minute, RetryWindow: time.Hour}, st, c)
	svc := &Service{Eng: classify.New(classify.Config{BlackTTL: time.Hour, WhiteTTL: time.Hour}, st, c, g, ts), Traps: ts,
		Live: func() Live { return Live{Connections: 3} }}
	got, err := svc.Status()
	if err != nil {
		t.Fatalf("status with the store down: %v", err)
	}
	if got.StoreDown == nil || !got.StoreDown.Equal(since) || got.Connections != 3 {
		t.Fatalf("status = %+v, want store down since %v and the live figures", got, since)
	}
}
