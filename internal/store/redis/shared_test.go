package redis

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"moat/internal/store"
	"moat/internal/store/redis/redistest"
)

// logBuf collects a store's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openOpt(t testing.TB, url string, opt Options) *Store {
	t.Helper()
	s, err := Open(url, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eventually polls cond for up to 10s: long enough for any machine, and
// no claim about how fast it is (the benchmarks measure that).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func flush(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func classOf(t *testing.T, s *Store, addr string) string {
	t.Helper()
	h, ok, err := s.Lookup(netip.MustParseAddr(addr))
	switch {
	case err != nil:
		return "error: " + err.Error()
	case !ok:
		return "none"
	}
	return h.Class.String()
}

// Two moats on one Redis: a change on one reaches the other's cache by
// the change channel. The cache TTL is an hour, so nothing else could
// carry it.
func TestChangesReachOtherMoat(t *testing.T) {
	changesReachOtherMoat(t, redistest.Start(t).URL(0))
}

func changesReachOtherMoat(t *testing.T, url string) {
	prefix := newPrefix()
	opt := Options{Prefix: prefix, CacheTTL: time.Hour, HealthInterval: time.Hour}
	a := openOpt(t, url, opt)
	b := openOpt(t, url, opt)

	// a has looked at the bot and cached "nothing known".
	if got := classOf(t, a, "192.0.2.7"); got != "none" {
		t.Fatalf("a: unknown host is %s", got)
	}
	// The bot hits a trap on b.
	put := func(s *Store, p string, c store.Class) {
		t.Helper()
		if err := s.PutHost(store.Host{Prefix: netip.MustParsePrefix(p), Class: c, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		flush(t, s)
	}
	put(b, "192.0.2.7/32", store.Black)
	eventually(t, "a does not see b's black host", func() bool { return classOf(t, a, "192.0.2.7") == "black" })

	// A network added on a: b learns of the new length and of the entry.
	if got := classOf(t, b, "198.51.100.9"); got != "none" {
		t.Fatalf("b: unknown host is %s", got)
	}
	put(a, "198.51.100.0/24", store.White)
	eventually(t, "b does not see a's network", func() bool { return classOf(t, b, "198.51.100.9") == "white" })

	// Deletions travel too.
	if err := b.DeleteHost(netip.MustParsePrefix("198.51.100.0/24")); err != nil {
		t.Fatal(err)
	}
	flush(t, b)
	eventually(t, "a still sees the deleted network", func() bool { return classOf(t, a, "198.51.100.9") == "none" })
}

// Two moats updating one host at once never lose each other's writes: the
// compare-and-set runs in Redis, not in either moat's cache.
func TestUpdateHostAcrossMoats(t *testing.T) {
	updateHostAcrossMoats(t, redistest.Start(t).URL(0))
}

func updateHostAcrossMoats(t *testing.T, url string) {
	opt := Options{Prefix: newPrefix(), CacheTTL: time.Hour, HealthInterval: time.Hour}
	a := openOpt(t, url, opt)
	b := openOpt(t, url, opt)
	p := netip.MustParsePrefix("192.0.2.77/32")
	const each = 25
	done := make(chan error, 2)
	for _, s := range []*Store{a, b} {
		go func() {
			for range each {
				_, _, err := s.UpdateHost(p, func(old store.Host, ok bool) (store.Host, bool) {
					old.Reason += "x"
					return old, true
				})
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Store{a, b} {
		eventually(t, "a moat does not see every update", func() bool {
			h, ok, err := s.Host(p)
			return err == nil && ok && len(h.Reason) == 2*each
		})
	}
}

// The cache answers without Redis while it is fresh, and asks again once
// its TTL has passed. A change written behind the store's back (no
// message) shows the difference.
func TestCacheTTL(t *testing.T) {
	srv := redistest.Start(t)
	prefix := newPrefix()
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	setBehindBack := func(c store.Class) {
		t.Helper()
		p := netip.MustParsePrefix("192.0.2.1/32")
		if err := raw.Set(context.Background(), prefix+"h:"+p.String(), encodeHost(store.Host{Prefix: p, Class: c}), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		ttl  time.Duration
		want string
	}{
		{time.Hour, "white"},       // cached: Redis is not asked
		{time.Nanosecond, "black"}, // every read asks
	} {
		setBehindBack(store.White)
		s := openOpt(t, srv.URL(0), Options{Prefix: prefix, CacheTTL: tc.ttl})
		if got := classOf(t, s, "192.0.2.1"); got != "white" {
			t.Fatalf("first lookup: %s", got)
		}
		setBehindBack(store.Black)
		if got := classOf(t, s, "192.0.2.1"); got != tc.want {
			t.Errorf("cache_ttl %v: after a change behind its back, Lookup = %s, want %s", tc.ttl, got, tc.want)
		}
	}
}

// Redis stops: cached hosts are still served, an unknown host is an
// ErrUnavailable (never "not found"), the outage is logged once, writes
// wait; Redis returns: the store says so once, sends the queued writes and
// answers again.
func TestOutage(t *testing.T) {
	srv := redistest.Start(t)
	var log logBuf
	prefix := newPrefix()
	s := openOpt(t, srv.URL(0), Options{
		Prefix: prefix, CacheTTL: 20 * time.Millisecond, HealthInterval: 20 * time.Millisecond,
		Timeout: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&log, nil)),
	})
	white := store.Host{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Class: store.White, Reason: "greylist"}
	if err := s.PutHost(white); err != nil {
		t.Fatal(err)
	}
	tr := store.Triplet{Net: netip.MustParsePrefix("192.0.2.0/24"), Sender: "a@example.org", Rcpt: "b@example.net"}
	if err := s.PutTriplet(tr, store.Attempt{Count: 1}); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	time.Sleep(30 * time.Millisecond) // past the cache TTL: only stale entries are left

	srv.Stop(t)
	for range 50 {
		if got := classOf(t, s, "192.0.2.10"); got != "white" {
			t.Fatalf("white host during the outage: %s", got)
		}
		if _, ok, err := s.Triplet(tr); !ok || err != nil {
			t.Fatalf("cached triplet during the outage: %v, %v", ok, err)
		}
		_, ok, err := s.Lookup(netip.MustParseAddr("192.0.2.99"))
		if ok || !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("unknown host during the outage: found %v, err %v; want ErrUnavailable", ok, err)
		}
	}
	if n := log.count("redis: unreachable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, log.String())
	}
	if down, _ := s.Down(); !down {
		t.Error("Down() = false during the outage")
	}
	black := store.Host{Prefix: netip.MustParsePrefix("203.0.113.5/32"), Class: store.Black, Reason: "trap hit"}
	if err := s.PutHost(black); err != nil {
		t.Fatalf("PutHost during the outage: %v (want it queued)", err)
	}
	if err := s.Flush(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Flush during the outage = %v, want ErrUnavailable", err)
	}
	if got := classOf(t, s, "203.0.113.5"); got != "black" {
		t.Errorf("a host written during the outage reads %s here", got)
	}

	srv.Restart(t) // empty: no persistence
	eventually(t, "no recovery line in the log", func() bool { return log.count("redis: reachable again") == 1 })
	flush(t, s)
	if got := classOf(t, s, "192.0.2.99"); got != "none" {
		t.Errorf("unknown host after recovery: %s", got)
	}
	// The queued write reached Redis: a fresh store reads it.
	other := openOpt(t, srv.URL(0), Options{Prefix: prefix})
	if got := classOf(t, other, "203.0.113.5"); got != "black" {
		t.Errorf("write queued during the outage: another store reads %s", got)
	}
	if n := log.count("redis: unreachable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, log.String())
	}
}

// A store opened while Redis is down works from the first moment Redis
// answers.
func TestOpenWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop(t)
	var log logBuf
	s := openOpt(t, srv.URL(0), Options{Prefix: newPrefix(), HealthInterval: 20 * time.Millisecond,
		Timeout: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&log, nil))})
	if _, _, err := s.Lookup(netip.MustParseAddr("192.0.2.1")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Lookup with Redis down = %v, want ErrUnavailable", err)
	}
	srv.Restart(t)
	eventually(t, "no recovery", func() bool { return classOf(t, s, "192.0.2.1") == "none" })
}

func TestURLs(t *testing.T) {
	for _, tc := range []struct {
		url  string
		kind string // "single", "failover", "cluster" or "" for an error
		wait int    // replicas Flush waits for
	}{
		{"redis://127.0.0.1:6379/0", "single", 0},
		{"redis://:secret@127.0.0.1:6379/2?dial_timeout=2s", "single", 0},
		{"rediss://user:secret@redis.example.org:6380/0", "single", 0},
		{"redis://127.0.0.1:6379/0?wait_replicas=2", "single", 2},
		{"redis-sentinel://127.0.0.1:26379,127.0.0.2:26379/0?master_name=mymaster", "failover", 1},
		{"redis-sentinel://127.0.0.1:26379/0?master_name=mymaster&wait_replicas=0", "failover", 0},
		{"rediss-sentinel://127.0.0.1:26379/0?master_name=mymaster&password=x", "failover", 1},
		{"redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002", "cluster", 0},
		{"redis-cluster://127.0.0.1:7000?wait_replicas=1", "", 0}, // a pipeline spans masters
		{"redis-sentinel://127.0.0.1:26379/0?master_name=m&wait_replicas=-1", "", 0},
		{"redis-sentinel://127.0.0.1:26379/0?master_name=m&wait_replicas=one", "", 0},
		{"redis-sentinel://127.0.0.1:26379/0", "", 0}, // no master name
		{"redis://127.0.0.1:6379,127.0.0.2:6379/0", "", 0},
		{"redis://127.0.0.1:6379/0?no_such_option=1", "", 0},
		{"memcached://127.0.0.1:11211", "", 0},
		{"redis-replica://127.0.0.1:6379", "", 0},
		{"redis://127.0.0.1:6379/notadb", "", 0},
		{"redis://,/0", "", 0},
	} {
		c, _, wait, err := newClient(tc.url, time.Second)
		if tc.kind == "" {
			if err == nil {
				c.Close()
				t.Errorf("%s: accepted, want an error", tc.url)
			} else if strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: error shows the password: %v", tc.url, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		kind := "single"
		switch cl := c.(type) {
		case *goredis.ClusterClient:
			kind = "cluster"
		case *goredis.Client:
			if cl.Options().Addr == "FailoverClient" {
				kind = "failover"
			}
		}
		if kind != tc.kind || wait != tc.wait {
			t.Errorf("%s: got a %s client waiting for %d replicas, want %s and %d", tc.url, kind, wait, tc.kind, tc.wait)
		}
		c.Close()
	}
}
