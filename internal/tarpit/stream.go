package tarpit

// serve is the portable path: one goroutine per connection that reads when
// the dialog wants input and, while a reply is owed, writes one byte each
// time the scheduler says so. It is used where there is no epoll and for
// connections that are not *net.TCPConn (a wrapped conn has no descriptor
// we may write to behind its back). The pacing is the same scheduler's.
func (s *session) serve() {
	t := s.t
	defer t.wg.Done()
	var buf [2048]byte
	var one [1]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		s.pump(t.now())
		if s.closed {
			return
		}
		if s.out != "" {
			t.wheel.push(s)
			s.mu.Unlock()
			<-s.tick // closed by shutLocked, so a drop wakes us too
			s.mu.Lock()
			if s.closed {
				return
			}
			one[0] = s.out[s.off]
			// The write may block (the client does not read); it must not
			// hold the lock that Close and the sweep need to unblock it.
			s.mu.Unlock()
			_, err := s.conn.Write(one[:])
			s.mu.Lock()
			if s.closed {
				return
			}
			if err != nil || s.sent(t.now()) {
				s.shutLocked()
				return
			}
			continue
		}
		want := buf[:]
		if s.dot != dotCommand {
			// A message is read DataPace bytes a Stutter, when the
			// scheduler says so.
			t.wheel.push(s)
			s.mu.Unlock()
			<-s.tick
			s.mu.Lock()
			if s.closed {
				return
			}
			want = buf[:min(len(buf), t.limits().DataPace)]
			t.paced.Add(1)
		}
		s.mu.Unlock()
		n, err := s.conn.Read(want)
		s.mu.Lock()
		if s.closed {
			return
		}
		if n > 0 {
			// Processed by pump at the top of the loop, possibly across
			// several replies; no read happens until it is used up.
			s.pending = buf[:n]
			continue
		}
		if err != nil {
			s.shutLocked()
			return
		}
	}
}
