package tarpit

import (
	"sync"
	"time"
)

// wheel is the stutter queue: the sessions that owe a byte, in the order
// they are due. Every interval is the same Stutter, so a session queued later
// is never due earlier: a FIFO is already sorted, and push and pop are O(1)
// with no heap and no timer per connection.
//
// Due times are rounded up to a quantum so that the scheduler wakes a few
// dozen times per Stutter and writes a batch each time, instead of waking
// once per byte of 19,000 connections. The quantum (Stutter/50, at most
// 20ms) is the jitter a client may see between two bytes.
type wheel struct {
	t       *Tarpit
	step    int64 // Stutter in nanoseconds
	quantum int64
	wake    chan struct{} // a push into an empty queue rouses the scheduler

	mu   sync.Mutex
	q    []entry // ring buffer, len a power of two
	head int
	n    int
}

type entry struct {
	s   *session
	due int64
}

func (w *wheel) init(t *Tarpit, step int64) {
	w.t = t
	w.setStep(step)
	w.wake = make(chan struct{}, 1)
	w.q = make([]entry, 64)
}

// setStep sets the Stutter. After a shorter one, a session queued later
// may be due before one queued earlier: it waits behind it, at most one
// old Stutter once, and the queue is in order again when those queued
// before the change are out.
func (w *wheel) setStep(step int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.step = step
	w.quantum = min(step/50, int64(20*time.Millisecond))
	if w.quantum < int64(time.Millisecond) {
		w.quantum = min(step, int64(time.Millisecond))
	}
}

// push queues s to write its next byte one Stutter from now. The time is
// read under the lock so that queue order and due order agree.
func (w *wheel) push(s *session) {
	w.mu.Lock()
	due := w.t.now() + w.step
	if r := due % w.quantum; r != 0 {
		due += w.quantum - r
	}
	if w.n == len(w.q) {
		q := make([]entry, 2*len(w.q))
		for i := range w.n {
			q[i] = w.q[(w.head+i)&(len(w.q)-1)]
		}
		w.q, w.head = q, 0
	}
	w.q[(w.head+w.n)&(len(w.q)-1)] = entry{s, due}
	w.n++
	first := w.n == 1
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// due moves the sessions due by now into out and returns it with the due
// time of the next one, or -1 if the queue is empty.
func (w *wheel) due(now int64, out []*session) ([]*session, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	mask := len(w.q) - 1
	for w.n > 0 {
		e := &w.q[w.head]
		if e.due > now {
			return out, e.due
		}
		out = append(out, e.s)
		*e = entry{}
		w.head = (w.head + 1) & mask
		w.n--
	}
	return out, -1
}

// schedule is the one goroutine that paces every stuttered byte and sweeps
// the limits.
func (t *Tarpit) schedule() {
	defer t.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []*session
	nextSweep := t.now() + t.sweepEvery()
	for {
		now := t.now()
		var next int64
		batch, next = t.wheel.due(now, batch[:0])
		for _, s := range batch {
			t.tick(s)
		}
		clear(batch)
		if now >= nextSweep {
			t.sweep(now)
			nextSweep = now + t.sweepEvery()
		}
		wait := nextSweep - now
		if next >= 0 && next-now < wait {
			wait = next - now
		}
		timer.Reset(time.Duration(wait))
		select {
		case <-timer.C:
		case <-t.wheel.wake:
		case <-t.quit:
			return
		}
	}
}

// tick writes the next byte s owes, or reads the next DataPace bytes of
// the message it is sending. A descriptor is written or read here, without
// blocking; a streamed connection is told to do it itself, since a
// net.Conn write or read may block and must not stall every other
// connection.
func (t *Tarpit) tick(s *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.out == "" && !s.reading() {
		return
	}
	if s.fd < 0 {
		select {
		case s.tick <- struct{}{}:
		default:
		}
		return
	}
	if s.reading() {
		t.readPaced(s)
		return
	}
	t.one[0] = s.out[s.off]
	again, err := writeOne(s.fd, t.one[:])
	switch {
	case err != nil:
		s.shutLocked()
	case again:
		// The client's receive window is full: it is not reading. Try
		// again next Stutter; MaxDuration ends it if it never reads.
		t.wheel.push(s)
	case s.sent(t.now()):
		s.shutLocked()
	case s.out != "":
		t.wheel.push(s)
	default:
		s.settle(t.now())
	}
}

// readPaced reads the next DataPace bytes of the message an fd-mode session
// is sending, as readable reads commands: it peeks, feeds the dialog and
// consumes exactly what the dialog used, so that what follows the end of
// the message stays in the kernel. Nothing there yet: try again next
// Stutter (the idle timeout ends a client that stopped sending).
func (t *Tarpit) readPaced(s *session) {
	n, err := peekRaw(s.fd, t.data[:t.limits().DataPace])
	switch {
	case err == errAgain:
		t.wheel.push(s)
		return
	case err != nil || n == 0:
		s.shutLocked()
		return
	}
	t.paced.Add(1)
	now := t.now()
	k := s.take(t.data[:n], now)
	if s.closed {
		return
	}
	if k > 0 {
		if err := consumeRaw(s.fd, t.data[:k]); err != nil {
			s.shutLocked()
			return
		}
	}
	s.settle(now)
}
