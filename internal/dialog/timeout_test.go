package dialog_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"moat/internal/server/servertest"
)

// passed opens a session of host whose retry passes, up to DATA's 354.
func passed(t *testing.T, w *servertest.World, host string) *client {
	greylisted(t, w, host)
	c := dial(t, w, host)
	c.expect("EHLO c", "250 ")
	c.expect("MAIL FROM:<s@sender.example>", "250 2.1.0")
	c.expect("RCPT TO:<alice@example.test>", "250 2.1.5")
	c.expect("DATA", "354")
	return c
}

// limits.data_timeout is an idle timeout for each read of a message's
// data (RFC 5321 4.5.3.2.5), not a deadline for the whole message: a
// message sent in pieces, each well within it, goes through however long
// it takes in all; a client that stops sending for longer is let go, and
// the backend gets no end of data.
func TestDataTimeoutPerRead(t *testing.T) {
	const idle = time.Second
	w := servertest.Start(t, servertest.Config{MinRetry: time.Minute, DataTimeout: idle})

	c := passed(t, w, "127.0.8.1")
	io.WriteString(c.c, "Subject: slow\r\n\r\n")
	for i := range 15 { // 15 pieces, 100ms apart: more than the timeout in all
		time.Sleep(idle / 10)
		io.WriteString(c.c, strings.Repeat("x", i+1)+"\r\n")
	}
	c.expect(".", "250 2.0.0")
	c.expect("QUIT", "221")
	if msgs := w.Backend.Messages(); len(msgs) != 1 || !strings.Contains(msgs[0].Data, "Subject: slow") {
		t.Fatalf("backend messages %+v, want the slow one", msgs)
	}

	c = passed(t, w, "127.0.9.1")
	io.WriteString(c.c, "Subject: stalled\r\n\r\nhalf a mess")
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	c.expect("", "421 4.4.2")
	if msgs := w.Backend.Messages(); len(msgs) != 1 {
		t.Errorf("backend has %d messages, want only the first: a stalled message has no end", len(msgs))
	}
}

// limits.min_data_rate: after data_timeout of grace, a message's data
// must average the rate. A message that keeps up goes through however
// long it takes; one trickled slower than the rate, each piece well within
// data_timeout, is let go with 421 and the backend gets no end of data, so
// a client cannot hold a backend connection for hours.
func TestMinDataRate(t *testing.T) {
	const idle = 500 * time.Millisecond
	w := servertest.Start(t, servertest.Config{MinRetry: time.Minute, DataTimeout: idle, MinDataRate: 1000})

	// 200 bytes every 100ms, 2,000 bytes a second, for 1.5 s.
	c := passed(t, w, "127.0.11.1")
	io.WriteString(c.c, "Subject: keeps up\r\n\r\n")
	for range 15 {
		time.Sleep(idle / 5)
		io.WriteString(c.c, strings.Repeat("y", 198)+"\r\n")
	}
	c.expect(".", "250 2.0.0")
	c.expect("QUIT", "221")

	// 5 bytes every 100ms, 50 bytes a second, for as long as moat
	// listens: each piece well within data_timeout, the whole far below
	// the rate. Without the floor it would never be let go.
	c = passed(t, w, "127.0.12.1")
	io.WriteString(c.c, "Subject: trickle\r\n\r\n")
	go func() {
		for {
			time.Sleep(idle / 5)
			if _, err := io.WriteString(c.c, "abc\r\n"); err != nil {
				return
			}
		}
	}()
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	c.expect("", "421 4.4.2")
	msgs := w.Backend.Messages()
	if len(msgs) != 1 || !strings.Contains(msgs[0].Data, "Subject: keeps up") {
		t.Errorf("backend messages %+v, want only the one that kept up", msgs)
	}
}

// limits.data_done_timeout bounds the wait for the backend's reply after
// the end of data: past it the client gets a 4xx and keeps the message.
func TestDataDoneTimeout(t *testing.T) {
	w := servertest.Start(t, servertest.Config{MinRetry: time.Minute, DataDoneTimeout: 300 * time.Millisecond})
	w.Backend.SlowEndOfData(3 * time.Second)
	c := passed(t, w, "127.0.10.1")
	c.expect("Subject: x\r\n\r\nhello\r\n.", "451 4.4.2")
	c.expect("QUIT", "221")
}
