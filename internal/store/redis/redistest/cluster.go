package redistest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters, each serving a third of
// the hash slots, with no replicas.
type Cluster struct {
	Masters []*Server
}

// StartCluster starts three cluster-enabled servers, gives each its slots,
// introduces them to each other, and returns once every node says the
// cluster is ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	for range 3 {
		c.Masters = append(c.Masters, start(t, func(srv *Server) []string {
			return []string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(srv.dir, "nodes.conf"),
				"--cluster-node-timeout", "2000"}
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const slots = 16384
	for i, m := range c.Masters {
		rc := goredis.NewClient(&goredis.Options{Addr: m.Addr})
		lo, hi := i*slots/len(c.Masters), (i+1)*slots/len(c.Masters)-1
		err := rc.ClusterAddSlotsRange(ctx, lo, hi).Err()
		for _, o := range c.Masters[:i] {
			if err == nil {
				err = rc.ClusterMeet(ctx, "127.0.0.1", o.Port()).Err()
			}
		}
		rc.Close()
		if err != nil {
			t.Fatalf("redistest: cluster set-up of %s: %v", m.Addr, err)
		}
	}
	waitFor(t, 30*time.Second, "every node to say the cluster is ok", func() bool {
		for _, m := range c.Masters {
			if !clusterOK(m.Addr) {
				return false
			}
		}
		return true
	})
	return c
}

func clusterOK(addr string) bool {
	rc := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := rc.ClusterInfo(ctx).Result()
	return err == nil && strings.Contains(s, "cluster_state:ok") && strings.Contains(s, "cluster_known_nodes:3")
}

// URL is the redis-cluster:// URL with every master as a seed.
func (c *Cluster) URL() string {
	var addrs []string
	for _, m := range c.Masters {
		addrs = append(addrs, m.Addr)
	}
	return fmt.Sprintf("redis-cluster://%s", strings.Join(addrs, ","))
}
