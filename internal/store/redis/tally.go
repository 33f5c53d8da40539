package redis

import (
	"context"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"moat/internal/store"
)

// Tally notes member under key at at and counts the members noted within
// window (store.Store says the rest). It is one MULTI on one sorted set,
// so every moat sharing the Redis counts into the same set atomically and
// Redis Cluster keeps it in one slot: add the note (a later note of a
// member wins), drop notes older than the window and the oldest beyond
// limit, count, and let the key lapse a window after its last note. It
// waits for Redis rather than going through the write queue: the caller
// needs the count, and a new black host, which is what is counted, is
// rare next to connections.
func (s *Store) Tally(key, member string, at time.Time, window time.Duration, limit int) (int, error) {
	if err := store.CheckTally(key, member, window, limit); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, errClosed
	}
	k := s.k.tally(key)
	ms := at.UnixMilli()
	var n int64
	err := s.call(func(ctx context.Context) error {
		pipe := s.rdb.TxPipeline()
		pipe.ZAddGT(ctx, k, goredis.Z{Score: float64(ms), Member: member})
		pipe.ZRemRangeByScore(ctx, k, "-inf", "("+strconv.FormatInt(ms-window.Milliseconds(), 10))
		pipe.ZRemRangeByRank(ctx, k, 0, int64(-limit-1))
		card := pipe.ZCard(ctx, k)
		pipe.PExpire(ctx, k, window)
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		n = card.Val()
		return nil
	})
	return int(n), err
}

// DropTally forgets key's notes.
func (s *Store) DropTally(key string) error {
	if s.closed.Load() {
		return errClosed
	}
	return s.call(func(ctx context.Context) error {
		return s.rdb.Del(ctx, s.k.tally(key)).Err()
	})
}
