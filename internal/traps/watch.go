package traps

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
)

// Watch reloads the stored traps every interval until ctx is done, so that
// traps added on another moat sharing the store apply here too. A failed
// reload keeps the last list and is logged; the next tick tries again.
func (s *Set) Watch(ctx context.Context, every time.Duration, log *slog.Logger) {
	clock.Every(ctx, every, func() {
		// An unreachable store says so itself, once per outage; the
		// set keeps the traps it last read.
		if err := s.Reload(); err != nil && !errors.Is(err, store.ErrUnavailable) {
			log.Warn("traps: reload", "err", err.Error())
		}
	})
}
