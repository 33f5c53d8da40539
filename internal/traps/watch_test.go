package traps

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// A trap added through one Set (another moat on the same store) applies
// to a Set that watches the store, and Watch returns when ctx is done.
func TestWatchPicksUpTrapsAddedElsewhere(t *testing.T) {
	st := newStore(t, nil)
	here, there := newTrapSet(t, st), newTrapSet(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		here.Watch(ctx, time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	if _, err := there.Add("late@example.org"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !here.Is("late@example.org"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watching set never saw the trap added through the other one")
		}
	}
	cancel()
	<-done
}
