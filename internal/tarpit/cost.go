package tarpit

import "time"

// Cost is what holding one client costs the client: the reply bytes the
// tarpit stutters to it, the stutters spent reading its messages, and the
// time that takes.
type Cost struct {
	Bytes    int           // reply bytes, banner included when the session starts here
	Reads    int           // paced reads of its messages, DataPace bytes each
	Time     time.Duration // (Bytes + Reads) × Stutter, at most MaxDuration
	Messages int           // messages whose "queued" reply it got within MaxDuration
	Deferred int           // messages told 451 within MaxDuration (Config.Finals): the sender tries again
	Refused  int           // messages told 554 within MaxDuration: the sender bounces them
}

// Replay runs the tarpit's dialog over a client's side of a session (all
// it sends, pipelined or not: the dialog answers one command at a time
// either way) without a socket, and returns what the session costs the
// client if it waits for every reply: one Stutter for every byte of every
// reply and for every DataPace bytes of every message. It is the figure
// moat evaluate charges a bot for each session it sends to the tarpit, from
// the words and the pace the tarpit really has.
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
	elapsed := func() time.Duration { return time.Duration(c.Bytes+c.Reads) * t.limits().Stutter }
	msgs := s.msgs
	for {
		c.Bytes += len(s.out)
		if s.msgs > msgs && elapsed() <= t.limits().MaxDuration {
			switch s.out[0] {
			case '2':
				c.Messages++
			case '4':
				c.Deferred++
			default:
				c.Refused++
			}
		}
		s.out, msgs = "", s.msgs
		if s.quit || len(in) == 0 {
			break
		}
		if s.reading() {
			c.Reads++
			in = in[s.feed(in[:min(len(in), t.limits().DataPace)], 0):]
			continue
		}
		in = in[s.feed(in, 0):]
	}
	c.Time = min(elapsed(), t.limits().MaxDuration)
	return c, nil
}
