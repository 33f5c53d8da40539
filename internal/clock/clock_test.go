package clock

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestFakeMovesOnlyWhenTold(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f := NewFake(t0)
	if got := f.Now(); !got.Equal(t0) {
		t.Fatalf("Now = %v, want %v", got, t0)
	}
	time.Sleep(time.Millisecond)
	if got := f.Now(); !got.Equal(t0) {
		t.Fatalf("Now moved by itself to %v", got)
	}
	f.Advance(90 * time.Second)
	if got := f.Now(); !got.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("after Advance: %v", got)
	}
	f.Set(t0.Add(-time.Hour))
	if got := f.Now(); !got.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("after Set: %v", got)
	}
	var zero Fake
	if !zero.Now().IsZero() {
		t.Errorf("zero Fake starts at %v, want the zero time", zero.Now())
	}
}

// Sessions read the clock while a simulation moves it.
func TestFakeConcurrent(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 1000 {
				f.Advance(time.Second)
			}
		}()
		go func() {
			defer wg.Done()
			for range 1000 {
				_ = f.Now()
			}
		}()
	}
	wg.Wait()
	if got := f.Now(); !got.Equal(time.Unix(4000, 0)) {
		t.Errorf("after 4000 advances of 1s: %v", got.UTC())
	}
}

func TestRealIsTheWallClock(t *testing.T) {
	before := time.Now()
	got := Real{}.Now()
	if got.Before(before) || got.After(time.Now()) {
		t.Errorf("Real.Now = %v, not between the wall clock's readings", got)
	}
}

func TestEveryStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	done := make(chan struct{})
	go func() {
		Every(ctx, time.Millisecond, func() {
			if n++; n == 3 {
				cancel()
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context was cancelled")
	}
	if n != 3 {
		t.Errorf("fn ran %d times, want 3 (it stops once the context is done)", n)
	}
}
