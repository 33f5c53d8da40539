// Package clock is the one source of time for every decision moat makes.
//
// Production code uses Real; tests and the evaluation harness use a Fake
// that they move forward by hand, so days of traffic can be replayed in
// milliseconds. Nothing that decides a class reads time.Now directly.
package clock

import (
	"context"
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// Fake is a clock that only moves when told to. The zero value starts at
// the zero time; use NewFake for a sensible start.
type Fake struct {
	mu sync.Mutex
	t  time.Time
}

// NewFake returns a Fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{t: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

// Advance moves the fake time forward by d.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// Set sets the fake time to t.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.t = t
	f.mu.Unlock()
}

// Every calls fn every d, on the caller's goroutine, until ctx is done,
// and returns then. It is for the background loops (reloads, probes,
// sweeps), which run on the wall clock whatever clock decisions use.
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// A tick and the end can be ready at once: the end wins.
			if ctx.Err() != nil {
				return
			}
			fn()
		}
	}
}
