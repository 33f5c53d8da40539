package tarpit

import "time"

// Cost is what holding one client costs the client: the reply bytes the
// tarpit stutters to it and the time that takes at one byte per Stutter.
type Cost struct {
	Bytes    int           // reply bytes, banner included when the session starts here
	Time     time.Duration // Bytes × Stutter, at most MaxDuration
	Messages int           // messages whose "queued" reply it got within MaxDuration
}

// Replay runs the tarpit's dialog over a client's side of a session (all
// it sends, pipelined or not: the dialog answers one command at a time
// either way) without a socket, and returns what the session costs the
// client if it waits for every reply. It is the figure moat evaluate
// charges a bot for each session it sends to the tarpit, from the words
// the tarpit really says.
func Replay(cfg Config, st Start, client []byte) (Cost, error) {
	t, err := newTarpit(cfg, Events{})
	if err != nil {
		return Cost{}, err
	}
	s := &session{t: t, fd: -1}
	s.begin(st)
	in := append(append([]byte(nil), s.pending...), client...)
	s.pending = nil
	var c Cost
	msgs := s.msgs
	for {
		c.Bytes += len(s.out)
		if s.msgs > msgs && time.Duration(c.Bytes)*t.limits().Stutter <= t.limits().MaxDuration {
			c.Messages++
		}
		s.out, msgs = "", s.msgs
		if s.quit || len(in) == 0 {
			break
		}
		in = in[s.feed(in, 0):]
	}
	c.Time = min(time.Duration(c.Bytes)*t.limits().Stutter, t.limits().MaxDuration)
	return c, nil
}
