package tarpit

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"moat/internal/store"
)

// session is one held connection. Its size is the cost of holding a bot, so
// it is kept small and fixed: no buffer of its own except a command line
// that spans two reads, no goroutine (in fd mode), no timer. The reply being
// stuttered points into a constant string or one built once per reply; the
// DATA detector is a byte of state.
type session struct {
	mu     sync.Mutex
	t      *Tarpit
	conn   net.Conn // kept so the runtime does not close the descriptor under us
	client netip.Addr
	tick   chan struct{} // stream mode only: "write your next byte"

	start, idle int64 // t.now() at Hold, and at the last complete line or finished reply
	bytesIn     int64

	out     string // the reply being stuttered; "" when we owe nothing
	line    []byte // a command line that spans reads; nil between lines
	pending []byte // client bytes read but not yet processed (Start.Pending, stream reads)

	fd    int32  // socket descriptor in fd mode; -1 in stream mode
	idx   int32  // position in t.sessions
	off   uint16 // next byte of out to write (replies are short)
	msgs  uint16 // messages "queued" (saturating, like the counts below)
	cmds  uint16 // commands, for max_commands
	rcpts uint16 // recipients of the transaction, for max_rcpts
	errs  uint8  // client errors, for max_errors
	dot   uint8  // dotCommand outside DATA, else the DATA end detector's state (see scanData)

	// source is why the host is black: it picks the reply at the end of
	// DATA (Config.Finals). A relay attempt changes it to store.SourceRelay.
	source   store.Source
	stage    uint8 // where the dialog is: stageGreeting ... stageMailUTF8
	quit     bool  // QUIT answered (or a limit hit): close once the reply is out
	overlong bool  // the command line being read went past maxLine: discard it
	armed    bool  // fd mode: EPOLLIN is in the interest set
	closed   bool
}

// Dialog stages, one byte where three flags would not fit in the struct's
// last word.
const (
	stageGreeting = iota // no EHLO or HELO yet
	stageHelo            // greeted: MAIL may follow
	stageMail            // MAIL accepted: RCPT and DATA may follow
	stageMailUTF8        // MAIL accepted with SMTPUTF8: addresses may be UTF-8
)

// inMail reports whether a MAIL was accepted.
func (s *session) inMail() bool { return s.stage >= stageMail }

// owing reports whether the session has something to do before it needs
// more input: a reply to stutter or bytes to process.
func (s *session) owing() bool { return s.out != "" || len(s.pending) > 0 }

// reading reports a session whose client is sending a message that the
// tarpit reads at its own pace, DataPace bytes a Stutter: it waits in the
// wheel, not in the poll loop. (A field would cost the held connection a
// word; the state says it already.)
func (s *session) reading() bool { return s.dot != dotCommand && s.out == "" }

// take feeds p to the dialog and enforces MaxBytes. It returns the number of
// bytes used; the rest must be offered again once the reply is out.
func (s *session) take(p []byte, now int64) int {
	n := s.feed(p, now)
	s.bytesIn += int64(n)
	if s.bytesIn > s.t.limits().MaxBytes {
		s.shutLocked()
	}
	return n
}

// pump processes pending bytes while no reply is owed.
func (s *session) pump(now int64) {
	for !s.closed && s.out == "" && len(s.pending) > 0 {
		n := s.take(s.pending, now)
		if n == 0 {
			break
		}
		if !s.closed {
			s.pending = s.pending[n:]
		}
	}
	if len(s.pending) == 0 {
		// Drop the reference: it may pin a caller's buffer.
		s.pending = nil
	}
}

// settle moves an fd-mode session on after something changed: it processes
// pending bytes, then either queues the reply it owes (and stops reading, so
// pipelined commands wait in the kernel, not in our memory) or goes back to
// reading.
func (s *session) settle(now int64) {
	s.pump(now)
	if s.closed {
		return
	}
	p := s.t.poll
	if s.out != "" || s.dot != dotCommand {
		// A reply to stutter, or a message to read at DataPace bytes a
		// Stutter: either way the scheduler paces it, and the client's
		// bytes wait in the kernel.
		if s.armed {
			if err := p.arm(s.fd, false); err != nil {
				s.shutLocked()
				return
			}
			s.armed = false
		}
		s.t.wheel.push(s)
		return
	}
	if !s.armed {
		if err := p.arm(s.fd, true); err != nil {
			s.shutLocked()
			return
		}
		s.armed = true
	}
}

// sent records that one byte of the reply went out. It returns true when
// the connection must now close (QUIT was answered).
func (s *session) sent(now int64) bool {
	s.off++
	if int(s.off) < len(s.out) {
		return false
	}
	s.out, s.off = "", 0
	s.idle = now
	return s.quit
}

// shutLocked ends the session: it closes the connection, forgets it and
// reports Done. It is idempotent.
func (s *session) shutLocked() {
	if s.closed {
		return
	}
	s.closed = true
	t := s.t
	if s.fd >= 0 {
		// Out of the epoll set before the descriptor can be reused.
		t.poll.del(s.fd)
	}
	s.conn.Close()
	if s.tick != nil {
		close(s.tick)
	}
	s.out, s.off, s.line, s.pending = "", 0, nil, nil
	now := t.now()
	t.unregister(s, now)
	if t.ev.Done != nil {
		t.ev.Done(Conn{s}, s.client, time.Duration(now-s.start), s.bytesIn, int(s.msgs))
	}
}
