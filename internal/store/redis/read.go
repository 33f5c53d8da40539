package redis

import (
	"context"
	"errors"
	"strconv"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// call makes the requests of do to Redis, within the request timeout,
// unless Redis is known to be down; an error of do is classified by fail
// (an outage marks the store down and is ErrUnavailable). Every read that
// goes to Redis rather than to the cache goes through it.
func (s *Store) call(do func(ctx context.Context) error) error {
	if s.down.Load() {
		return s.errUnavailable(nil)
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	if err := do(ctx); err != nil {
		return s.fail(err)
	}
	return nil
}

// getMany reads keys in one round trip; a missing key gives nil.
func (s *Store) getMany(keys []string) ([][]byte, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	out := make([][]byte, len(keys))
	err := s.call(func(ctx context.Context) error {
		if len(keys) == 1 {
			v, err := s.rdb.Get(ctx, keys[0]).Bytes()
			if errors.Is(err, goredis.Nil) {
				return nil
			}
			out[0] = v
			return err
		}
		pipe := s.rdb.Pipeline()
		cmds := make([]*goredis.StringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.Get(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		for i, c := range cmds {
			v, err := c.Bytes()
			switch {
			case errors.Is(err, goredis.Nil):
			case err != nil:
				return err
			default:
				out[i] = v
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// flushForRead makes the store's own writes visible to the reads that go
// to Redis only (listings, counters, traps).
func (s *Store) flushForRead() error {
	ctx, cancel := context.WithTimeout(s.ctx, 5*s.opt.Timeout)
	defer cancel()
	return s.Flush(ctx)
}

// current returns the value of key as this moat will leave it: its own
// pending write, else what Redis holds.
func (s *Store) current(k string) ([]byte, error) {
	if wr, ok := s.pending(k); ok {
		return wr.val, nil
	}
	vals, err := s.getMany([]string{k})
	if err != nil {
		return nil, err
	}
	return vals[0], nil
}

// indexMembers returns the members of a sorted-set index that have not
// expired by moat's clock, each once.
func (s *Store) indexMembers(index string) ([]string, error) {
	nowms := float64(s.clock.Now().UnixMilli())
	seen := make(map[string]struct{})
	var out []string
	var cursor uint64
	for {
		var kv []string
		var next uint64
		err := s.call(func(ctx context.Context) (err error) {
			kv, next, err = s.rdb.ZScan(ctx, index, cursor, "", 1000).Result()
			return err
		})
		if err != nil {
			return nil, err
		}
		for i := 0; i+1 < len(kv); i += 2 {
			sc, err := strconv.ParseFloat(kv[i+1], 64)
			if err != nil || sc <= nowms {
				continue
			}
			if _, dup := seen[kv[i]]; !dup {
				seen[kv[i]] = struct{}{}
				out = append(out, kv[i])
			}
		}
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

// values reads the values of many members in round trips of a few
// hundred keys; a member whose key has gone is skipped.
func (s *Store) values(members []string, key func(string) (string, bool), fn func(m string, v []byte) error) error {
	const chunk = 500
	for len(members) > 0 {
		n := min(chunk, len(members))
		var ms, ks []string
		for _, m := range members[:n] {
			if k, ok := key(m); ok {
				ms, ks = append(ms, m), append(ks, k)
			}
		}
		members = members[n:]
		if len(ks) == 0 {
			continue
		}
		vals, err := s.getMany(ks)
		if err != nil {
			return err
		}
		for i, v := range vals {
			if v == nil {
				continue
			}
			if err := fn(ms[i], v); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanKeys returns the keys matching a SCAN pattern, each once.
func (s *Store) scanKeys(match string) ([]string, error) {
	if s.down.Load() {
		return nil, s.errUnavailable(nil)
	}
	var mu sync.Mutex
	seen := make(map[string]struct{})
	var out []string
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		var cursor uint64
		for {
			cctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
			ks, next, err := c.Scan(cctx, cursor, match, 1000).Result()
			cancel()
			if err != nil {
				return err
			}
			mu.Lock()
			for _, k := range ks {
				if _, dup := seen[k]; !dup {
					seen[k] = struct{}{}
					out = append(out, k)
				}
			}
			mu.Unlock()
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	var err error
	if cc, ok := s.rdb.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(s.ctx, func(ctx context.Context, c *goredis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(s.ctx, s.rdb)
	}
	if err != nil {
		return nil, s.fail(err)
	}
	return out, nil
}
