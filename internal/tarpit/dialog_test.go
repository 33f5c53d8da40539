package tarpit

import (
	"bytes"
	"strings"
	"testing"

	"moat/internal/smtp"
	"moat/internal/store"
)

// newSession is a session with no connection, for driving the dialog by
// hand: feed it bytes, take its reply, pretend the reply went out.
func newSession(t testing.TB) *session {
	t.Helper()
	tp, err := newTarpit(Config{Hostname: testHost}, Events{})
	if err != nil {
		t.Fatal(err)
	}
	return &session{t: tp, fd: -1, source: store.SourceTrap}
}

// converse feeds in, split into chunks of the given size, and returns every
// reply in order, as the I/O paths would: input is offered again after each
// reply until it is used up.
func converse(s *session, in []byte, chunk int) (replies []string) {
	for len(in) > 0 {
		c := in[:min(chunk, len(in))]
		for len(c) > 0 {
			n := s.feed(c, 0)
			c = c[n:]
			in = in[n:]
			if s.out == "" {
				if n == 0 {
					return replies // cannot happen; keeps a bug from looping
				}
				continue
			}
			replies = append(replies, s.out)
			s.out = ""
			if s.quit {
				return replies
			}
		}
	}
	return replies
}

func TestFeedSplits(t *testing.T) {
	in := []byte("EHLO a\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nbody\r\n..\r\n.\r\nNOOP\r\nQUIT\r\nNOOP\r\n")
	want := []string{ehlo, smtp.ReplyMailOK, smtp.ReplyRcptOK, smtp.ReplyData, queued, smtp.ReplyOK, smtp.ReplyBye}
	for chunk := 1; chunk <= len(in); chunk++ {
		got := converse(newSession(t), in, chunk)
		if len(got) != len(want) {
			t.Fatalf("chunk %d: replies %q, want %q", chunk, got, want)
		}
		for i := range got {
			if want[i] == queued {
				if !strings.HasPrefix(got[i], queuedPrefix) || len(got[i]) != len(queuedPrefix)+queueIDLen+2 {
					t.Errorf("chunk %d: reply %d = %q, want a queue ID", chunk, i, got[i])
				}
				continue
			}
			if got[i] != want[i] {
				t.Errorf("chunk %d: reply %d = %q, want %q", chunk, i, got[i], want[i])
			}
		}
	}
}

// dataEnd is the reference for scanData: where the message ends in body
// (just past the final LF), if anywhere. The CRLF that ended the DATA
// command counts as the start of the first line.
func dataEnd(body []byte) int {
	i := bytes.Index(append([]byte("\r\n"), body...), []byte("\r\n.\r\n"))
	if i < 0 {
		return -1
	}
	return i + 3
}

func TestScanData(t *testing.T) {
	for _, body := range []string{
		".\r\n",
		"a\r\n.\r\n",
		"a\n.\n",
		"a\r.\r",
		"a\r\n.\n",
		"a\n.\r\n",
		"a\r\n..\r\n",
		"a\r\n.\r\r\n",
		"a\r\r\n.\r\n",
		"a\r\n.\r.\r\n",
		"\r\n\r\n.\r\n",
		"x.\r\n",
	} {
		checkScanData(t, []byte(body), 1)
		checkScanData(t, []byte(body), len(body))
	}
}

func checkScanData(t *testing.T, body []byte, chunk int) {
	t.Helper()
	s := newSession(t)
	s.dot = dotLineStart
	got, used := -1, 0
	for used < len(body) && got < 0 {
		n, end := s.scanData(body[used:min(used+chunk, len(body))])
		used += n
		if end {
			got = used
		}
	}
	if want := dataEnd(body); got != want {
		t.Errorf("body %q in chunks of %d: end at %d, want %d", body, chunk, got, want)
	}
}

func TestLineBound(t *testing.T) {
	s := newSession(t)
	long := strings.Repeat("a", 10*maxLine)
	// A line that never ends is never kept whole.
	for i := 0; i < len(long); i += 100 {
		s.feed([]byte(long[i:min(i+100, len(long))]), 0)
		if len(s.line) > maxLine+1 {
			t.Fatalf("line buffer grew to %d", len(s.line))
		}
	}
	s.feed([]byte("\r\n"), 0)
	if s.out != smtp.ReplyTooLong {
		t.Fatalf("reply %q, want line too long", s.out)
	}
	if s.line != nil {
		t.Error("line buffer kept after the line ended")
	}
	s.out = ""
	s.feed([]byte("NOOP\r\n"), 0)
	if s.out != smtp.ReplyOK {
		t.Errorf("after a long line, NOOP got %q", s.out)
	}
}

func TestQueueIDUnique(t *testing.T) {
	s := newSession(t)
	seen := map[uint64]bool{}
	for range 100000 {
		id := s.t.queueID()
		if id >= 1<<48 || seen[id] {
			t.Fatalf("queue ID %x repeated or too wide", id)
		}
		seen[id] = true
	}
}
