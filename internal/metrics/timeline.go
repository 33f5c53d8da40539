package metrics

import (
	"sync"
	"time"
)

// Timeline counts sessions per series (class and verdict) in bars of one
// step each, over the last bars steps: the dashboard's chart. Prometheus
// keeps history for whoever scrapes it; a moat without one still shows
// the last hours.
//
// Adding is an index into a fixed ring under a mutex held for a few
// instructions: no allocation, whatever the traffic.
type Timeline struct {
	step    time.Duration
	names   []string
	now     func() time.Time
	started int64 // the step moat started in: the chart begins there

	mu    sync.Mutex
	bars  []bar
	count []uint32 // bars × series, bar i at [i*len(names):]
}

// bar is one step of the ring: which step it holds (unix time / step).
type bar struct{ at int64 }

func newTimeline(step time.Duration, bars int, names []string, now func() time.Time) *Timeline {
	return &Timeline{step: step, names: names, now: now, started: now().UnixNano() / int64(step),
		bars: make([]bar, bars), count: make([]uint32, bars*len(names))}
}

// Add counts one session of series i now.
func (t *Timeline) Add(i int) {
	at := t.now().UnixNano() / int64(t.step)
	t.mu.Lock()
	b := int(at % int64(len(t.bars)))
	row := t.count[b*len(t.names) : (b+1)*len(t.names)]
	if t.bars[b].at != at {
		// The bar held a step that has left the window.
		t.bars[b].at = at
		clear(row)
	}
	row[i]++
	t.mu.Unlock()
}

// Chart is a Timeline as the dashboard draws it.
type Chart struct {
	Step   float64  `json:"step"`  // seconds per bar
	Start  int64    `json:"start"` // unix seconds of the first bar's start
	Series []Series `json:"series"`
}

// Series is one class and verdict's count per bar, oldest first.
type Series struct {
	Name   string   `json:"name"` // "grey greylisted", "white spliced", …
	Counts []uint32 `json:"counts"`
}

// Chart returns the last n bars, the current one last (n at most the
// bars kept, and none from before moat started). Series with no session
// in them are left out.
func (t *Timeline) Chart(n int) Chart {
	now := t.now().UnixNano() / int64(t.step)
	n = min(max(n, 1), len(t.bars), int(now-t.started)+1)
	first := now - int64(n) + 1
	c := Chart{Step: t.step.Seconds(), Start: first * int64(t.step) / int64(time.Second)}
	counts := make([][]uint32, len(t.names))
	t.mu.Lock()
	for at := first; at <= now; at++ {
		b := int(at % int64(len(t.bars)))
		if t.bars[b].at != at {
			continue
		}
		for i, v := range t.count[b*len(t.names) : (b+1)*len(t.names)] {
			if v == 0 {
				continue
			}
			if counts[i] == nil {
				counts[i] = make([]uint32, n)
			}
			counts[i][at-first] = v
		}
	}
	t.mu.Unlock()
	for i, cs := range counts {
		if cs != nil {
			c.Series = append(c.Series, Series{Name: t.names[i], Counts: cs})
		}
	}
	return c
}
