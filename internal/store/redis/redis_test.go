package redis

import (
	"fmt"
	"sync/atomic"
	"testing"

	"moat/internal/clock"
	"moat/internal/store"
	"moat/internal/store/redis/redistest"
	"moat/internal/store/storetest"
)

// prefixes gives every store of a test its own key space on the shared
// server.
var prefixes atomic.Int64

func newPrefix() string { return fmt.Sprintf("test%d:", prefixes.Add(1)) }

func openT(t testing.TB, url, prefix string, c clock.Clock) *Store {
	t.Helper()
	s, err := Open(url, Options{Prefix: prefix, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T, c *clock.Fake) store.Store {
		return openT(t, srv.URL(0), newPrefix(), c)
	})
}

func TestDurable(t *testing.T) {
	srv := redistest.Start(t)
	var prefix string
	storetest.RunDurable(t,
		func(t *testing.T, c *clock.Fake) store.Store {
			prefix = newPrefix()
			return openT(t, srv.URL(0), prefix, c)
		},
		func(t *testing.T, c *clock.Fake) store.Store { return openT(t, srv.URL(0), prefix, c) })
}
