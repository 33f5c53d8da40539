package redis

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// quiet drops go-redis's own log lines: it would write one per failed
// dial, and an outage is the store's to report, once.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

// newClient turns the URL into a go-redis client and the number of
// replicas to wait for. go-redis takes the first host from the URL and
// further ones from addr= options; the comma list here is what operators
// write.
func newClient(raw string, timeout time.Duration) (rdb goredis.UniversalClient, where string, wait int, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", 0, fmt.Errorf("store: %q: not a URL: %v", raw, err)
	}
	where = u.Redacted()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("store: %s: "+format+" (see docs/redis.md)", append([]any{where}, a...)...)
	}
	scheme, mode, _ := strings.Cut(u.Scheme, "-")
	if scheme != "redis" && scheme != "rediss" || mode != "" && mode != "sentinel" && mode != "cluster" {
		return nil, "", 0, bad("unknown scheme %q: want redis, rediss, redis-sentinel or redis-cluster", u.Scheme)
	}
	hosts := strings.Split(u.Host, ",")
	if slices.Contains(hosts, "") {
		return nil, "", 0, bad("empty host")
	}
	if mode == "" && len(hosts) > 1 {
		return nil, "", 0, bad("several hosts: use redis-sentinel:// or redis-cluster://")
	}
	q := u.Query()
	// wait_replicas is moat's, not go-redis's: take it out before
	// go-redis sees an option it does not know. Sentinel's failover
	// promotes a replica, and a write the old master acknowledged but
	// had not passed on yet goes down with it: so with Sentinel, Flush
	// waits for one replica unless told otherwise.
	if mode == "sentinel" {
		wait = 1
	}
	if v, ok := q["wait_replicas"]; ok {
		n, err := strconv.Atoi(v[len(v)-1])
		if err != nil || n < 0 || n > 16 {
			return nil, "", 0, bad("wait_replicas=%q: want a number of replicas from 0 to 16", v[len(v)-1])
		}
		if n > 0 && mode == "cluster" {
			return nil, "", 0, bad("wait_replicas: not with Redis Cluster, where a pipeline spans several masters (see docs/redis.md)")
		}
		wait = n
		q.Del("wait_replicas")
	}
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	one := *u
	one.Scheme, one.Host, one.RawQuery = scheme, hosts[0], q.Encode()
	timeouts := func(dial, read, write *time.Duration, retries *int) {
		for _, d := range []*time.Duration{dial, read, write} {
			if *d == 0 {
				*d = timeout
			}
		}
		// One retry covers a pooled connection that Redis closed; more
		// would only hold a client longer when Redis is down.
		if *retries == 0 {
			*retries = 1
		}
	}
	switch mode {
	case "sentinel":
		o, err := goredis.ParseFailoverURL(one.String())
		if err != nil {
			return nil, "", 0, bad("%v", err)
		}
		if o.MasterName == "" {
			return nil, "", 0, bad("Sentinel needs the master's name: add ?master_name=NAME")
		}
		timeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries)
		return goredis.NewFailoverClient(o), where, wait, nil
	case "cluster":
		o, err := goredis.ParseClusterURL(one.String())
		if err != nil {
			return nil, "", 0, bad("%v", err)
		}
		timeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries)
		return goredis.NewClusterClient(o), where, wait, nil
	}
	o, err := goredis.ParseURL(one.String())
	if err != nil {
		return nil, "", 0, bad("%v", err)
	}
	timeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries)
	return goredis.NewClient(o), where, wait, nil
}
