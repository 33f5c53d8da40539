package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Sentinel is a replicated Redis watched by Sentinel, as docs/redis.md
// sets one up: a master, a replica, and three Sentinels with a quorum of
// two. Its timings are short so that a failover takes seconds.
type Sentinel struct {
	Name      string // the master's name in the Sentinels
	Master    *Server
	Replica   *Server
	Sentinels []*Server
}

// StartSentinel starts the master, the replica and the Sentinels, and
// returns once every Sentinel knows the replica and the other two.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{Name: "moat"}
	// A replica syncs as soon as it asks, not after the default wait
	// for more replicas to share the transfer (RejoinOld too).
	quick := []string{"--repl-diskless-sync-delay", "0"}
	s.Master = start(t, func(*Server) []string { return quick })
	s.Replica = start(t, func(*Server) []string { return append(quick, "--replicaof", "127.0.0.1", s.Master.Port()) })
	waitFor(t, 10*time.Second, "the replica's link to the master", func() bool {
		return strings.Contains(info(s.Replica.Addr, "replication"), "master_link_status:up")
	})
	for range 3 {
		s.Sentinels = append(s.Sentinels, start(t, func(srv *Server) []string {
			conf := filepath.Join(srv.dir, "sentinel.conf")
			text := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2\n"+
				"sentinel down-after-milliseconds %[1]s 500\n"+
				"sentinel failover-timeout %[1]s 3000\n", s.Name, s.Master.Port())
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{conf, "--sentinel"}
		}))
	}
	s.waitWatching(t)
	return s
}

// URL is the redis-sentinel:// URL of database db, with extra options
// ("wait_replicas=0", …) appended.
func (s *Sentinel) URL(db int, opts ...string) string {
	var addrs []string
	for _, x := range s.Sentinels {
		addrs = append(addrs, x.Addr)
	}
	u := fmt.Sprintf("redis-sentinel://%s/%d?master_name=%s", strings.Join(addrs, ","), db, s.Name)
	for _, o := range opts {
		u += "&" + o
	}
	return u
}

// Failover kills the master and returns once the Sentinels have promoted
// the replica: Master is then the promoted server, and Replica the old
// master, dead until RejoinOld starts it again.
func (s *Sentinel) Failover(t testing.TB) {
	t.Helper()
	s.Master.Stop(t)
	waitFor(t, 30*time.Second, "the Sentinels to promote the replica", func() bool {
		if !strings.Contains(info(s.Replica.Addr, "replication"), "role:master") {
			return false
		}
		for _, x := range s.Sentinels {
			if s.masterOf(x) != s.Replica.Addr {
				return false
			}
		}
		return true
	})
	s.Master, s.Replica = s.Replica, s.Master
}

// RejoinOld starts the old master again, empty, as a replica of the new
// one (what the Sentinels would tell it some seconds after it came back,
// and what its rewritten config says), and returns once it has synced and
// the Sentinels see it.
func (s *Sentinel) RejoinOld(t testing.TB) {
	t.Helper()
	s.Replica.args = []string{"--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", s.Master.Port()}
	s.Replica.Restart(t)
	waitFor(t, 30*time.Second, "the old master to sync as a replica", func() bool {
		return strings.Contains(info(s.Replica.Addr, "replication"), "master_link_status:up")
	})
	s.waitWatching(t)
}

// waitWatching waits until every Sentinel sees the master, a replica in
// good health and the two other Sentinels: only then can they agree on a
// failover.
func (s *Sentinel) waitWatching(t testing.TB) {
	t.Helper()
	waitFor(t, 30*time.Second, "the Sentinels to find the replica and each other", func() bool {
		for _, x := range s.Sentinels {
			c := goredis.NewSentinelClient(&goredis.Options{Addr: x.Addr, DialTimeout: time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			reps, err1 := c.Replicas(ctx, s.Name).Result()
			sens, err2 := c.Sentinels(ctx, s.Name).Result()
			cancel()
			c.Close()
			if err1 != nil || err2 != nil || len(sens) != len(s.Sentinels)-1 || s.masterOf(x) != s.Master.Addr {
				return false
			}
			ok := false
			for _, r := range reps {
				if r["name"] == s.Replica.Addr && r["flags"] == "slave" && r["master-link-status"] == "ok" {
					ok = true
				}
			}
			if !ok {
				return false
			}
		}
		return true
	})
}

// masterOf is the address Sentinel x gives for the master.
func (s *Sentinel) masterOf(x *Server) string {
	c := goredis.NewSentinelClient(&goredis.Options{Addr: x.Addr, DialTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a, err := c.GetMasterAddrByName(ctx, s.Name).Result()
	if err != nil || len(a) != 2 {
		return ""
	}
	return a[0] + ":" + a[1]
}

// info is a section of INFO from the server at addr, "" when it does
// not answer.
func info(addr, section string) string {
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, _ := c.Info(ctx, section).Result()
	return s
}

// waitFor polls cond every 50ms until it holds, failing the test after
// limit: the limit is a bound for a slow machine, not a measure.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: waited %v for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
