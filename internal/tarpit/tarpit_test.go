package tarpit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/smtp"
	"moat/internal/store"
)

const (
	testHost    = "mx.example.test"
	testStutter = 2 * time.Millisecond
	// ioWait only keeps a broken test from hanging; nothing asserts speed.
	ioWait = 20 * time.Second
)

var (
	// The grey dialog's words, with no greet delay and no STARTTLS.
	banner = "220 " + testHost + " ESMTP Postfix (Debian/GNU)\r\n"
	ehlo   = "250-" + testHost + "\r\n250-PIPELINING\r\n250-VRFY\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n"
	// queued stands for the end-of-DATA reply; its ID is checked by pattern.
	queued = "250 2.0.0 Ok: queued as " + qidMark + "\r\n"
)

const qidMark = "@@@@@@@@@@@@" // 12 characters, like the ID

// modes are the two ways a connection is held: by the epoll loop (a plain
// *net.TCPConn on Linux) and by a goroutine (any other net.Conn).
var modes = []string{"fd", "stream"}

// wrapped hides the *net.TCPConn so that Hold takes the stream path.
type wrapped struct{ net.Conn }

// rig is a tarpit behind a loopback listener.
type rig struct {
	tp   *Tarpit
	addr string
	held chan bool // Hold's answer for every accepted connection
}

func newRig(t testing.TB, cfg Config, ev Events, mode string, start func() Start) *rig {
	t.Helper()
	if cfg.Hostname == "" {
		cfg.Hostname = testHost
	}
	if cfg.Stutter == 0 {
		cfg.Stutter = testStutter
	}
	tp, err := New(cfg, ev)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{tp: tp, addr: ln.Addr().String(), held: make(chan bool, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			client := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			var nc net.Conn = c
			if mode == "stream" {
				nc = wrapped{c}
			}
			// A proven bot unless the test says otherwise: its messages
			// are "queued".
			s := Start{Source: store.SourceTrap}
			if start != nil {
				s = start()
			}
			r.held <- tp.Hold(nc, client, s)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		if err := tp.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// client is the bot's end of a held connection.
type client struct {
	t     testing.TB
	c     net.Conn
	reads int // Read calls that returned data
}

func (r *rig) dial(t testing.TB) *client {
	t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// read reads exactly n bytes.
func (c *client) read(n int) string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(ioWait))
	buf := make([]byte, n)
	got := 0
	for got < n {
		k, err := c.c.Read(buf[got:])
		if k > 0 {
			c.reads++
		}
		got += k
		if err != nil {
			c.t.Fatalf("read: got %q, then %v", buf[:got], err)
		}
	}
	return string(buf)
}

// expect reads a reply and checks it; qidMark matches a queue ID.
func (c *client) expect(want string) string {
	c.t.Helper()
	got := c.read(len(want))
	re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(want), qidMark, "[0-9A-F]{12}") + "$")
	if !re.MatchString(got) {
		c.t.Fatalf("got %q, want %q", got, want)
	}
	return got
}

// expectEOF checks that the tarpit closed the connection with nothing more
// to say.
func (c *client) expectEOF() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(ioWait))
	b, err := io.ReadAll(c.c)
	if len(b) > 0 {
		c.t.Fatalf("got %q, want the connection closed", b)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		c.t.Fatalf("want EOF, got %v", err)
	}
}

// isReset: closing a socket with unread input sends a reset; that is a close.
func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// step is one line of a dialog script: what the client sends, and the
// complete reply it must get.
type step struct{ send, want string }

const eof = "<EOF>"

func runScript(t *testing.T, c *client, steps []step) {
	t.Helper()
	for _, s := range steps {
		if s.send != "" {
			c.send(s.send)
		}
		if s.want == eof {
			c.expectEOF()
			continue
		}
		c.expect(s.want)
	}
}

func TestDialog(t *testing.T) {
	scripts := []struct {
		name  string
		steps []step
	}{
		{"relay to a foreign domain", []step{
			{"", banner},
			{"EHLO bot.example\r\n", ehlo},
			{"MAIL FROM:<spam@bot.example>\r\n", "250 2.1.0 Ok\r\n"},
			{"RCPT TO:<victim@foreign.example>\r\n", "250 2.1.5 Ok\r\n"},
			{"RCPT TO:<other@elsewhere.example>\r\n", "250 2.1.5 Ok\r\n"},
			{"DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n"},
			{"Subject: buy\r\n\r\n..dot-stuffed\r\nbody\r\n.\r\n", queued},
			{"QUIT\r\n", "221 2.0.0 Bye\r\n"},
			{"", eof},
		}},
		{"helo and housekeeping", []step{
			{"", banner},
			{"helo bot\r\n", "250 " + testHost + "\r\n"},
			{"NOOP\r\n", "250 2.0.0 Ok\r\n"},
			{"mail from: <a@b.example>\r\n", "250 2.1.0 Ok\r\n"},
			{"RSET\r\n", "250 2.0.0 Ok\r\n"},
			{"RCPT TO:<x@y.example>\r\n", "503 5.5.1 Error: need MAIL command\r\n"},
			{"VRFY postmaster\r\n", "252 2.0.0 Send some mail, I'll try my best\r\n"},
			{"VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n"},
			{"quit\r\n", "221 2.0.0 Bye\r\n"},
			{"", eof},
		}},
		{"noise", []step{
			{"", banner},
			{"STARTTLS\r\n", "502 5.5.2 Error: command not recognized\r\n"},
			{"AUTH LOGIN\r\n", "502 5.5.2 Error: command not recognized\r\n"},
			{"GET / HTTP/1.0\r\n", "502 5.5.2 Error: command not recognized\r\n"},
			{"\r\n", "500 5.5.2 Error: bad syntax\r\n"},
			{"EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n"},
			{"HELO\r\n", "501 5.5.4 Syntax: HELO hostname\r\n"},
			{"DATA\r\n", "503 5.5.1 Error: need RCPT command\r\n"},
			{"MAIL FROM:<a@b>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n"},
			{"HELO x\r\n", "250 " + testHost + "\r\n"},
			{"MAIL TO:<a@b>\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"},
			{"MAIL FROM:<a@b> FOO=BAR\r\n", "555 5.5.4 Unsupported option: FOO\r\n"},
			{"MAIL FROM:<\xc3\xa9@b>\r\n", "553 5.6.7 Must declare SMTPUTF8 to send unicode address\r\n"},
			{"MAIL FROM:<a@b>\r\n", "250 2.1.0 Ok\r\n"},
			{"MAIL FROM:<a@b>\r\n", "503 5.5.1 Error: nested MAIL command\r\n"},
			{"RCPT FROM:<a@b>\r\n", "501 5.5.4 Syntax: RCPT TO:<address>\r\n"},
			{"DATA\r\n", "554 5.5.1 Error: no valid recipients\r\n"},
			{"NOOP " + strings.Repeat("x", maxLine) + "\r\n", "500 5.5.0 Error: line too long\r\n"},
			{"VRFY a\x01b\r\n", "252 2.0.0 Send some mail, I'll try my best\r\n"},
			{"NOOP\n", "250 2.0.0 Ok\r\n"}, // bare LF ends a command line, as in Postfix
		}},
	}
	for _, mode := range modes {
		for _, sc := range scripts {
			t.Run(mode+"/"+sc.name, func(t *testing.T) {
				t.Parallel()
				r := newRig(t, Config{MaxErrors: 100}, Events{}, mode, nil)
				runScript(t, r.dial(t), sc.steps)
			})
		}
	}
}

// A command line that arrives a byte at a time is assembled across reads.
func TestSlowCommand(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{}, Events{}, mode, nil)
			c := r.dial(t)
			c.expect(banner)
			for _, b := range "EHLO slow.example\r\n" {
				c.send(string(b))
				time.Sleep(time.Millisecond)
			}
			c.expect(ehlo)
		})
	}
}

// Pipelined commands are answered in order, each reply whole before the
// next begins.
func TestPipelining(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{}, Events{}, mode, nil)
			c := r.dial(t)
			// Sent before the banner, as an early talker does.
			c.send("EHLO bot\r\nMAIL FROM:<a@bot.example>\r\nRCPT TO:<b@foreign.example>\r\n" +
				"RCPT TO:<c@foreign.example>\r\nDATA\r\nhello\r\n.\r\nNOOP\r\nQUIT\r\n")
			c.expect(banner + ehlo + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n" +
				"354 End data with <CR><LF>.<CR><LF>\r\n" + queued + "250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n")
			c.expectEOF()
		})
	}
}

// Only CRLF.CRLF ends DATA: bare-LF and bare-CR forms are content, so a
// smuggled "second message" is never seen as commands.
func TestDataEndsOnlyAtCRLFDotCRLF(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{}, Events{}, mode, nil)
			c := r.dial(t)
			runScript(t, c, []step{
				{"", banner},
				{"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
					"250 " + testHost + "\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"},
			})
			c.send("one\n.\nRSET\r\n")
			c.send("two\r.\rNOOP\r\n")
			c.send("three\r\n.\nVRFY x\r\n")
			c.send("four\n.\r\nHELO y\r\n")
			c.send(".\r\n") // the real end: after CRLF
			c.send("QUIT\r\n")
			c.expect(queued + "221 2.0.0 Bye\r\n")
			c.expectEOF()
		})
	}
}

// TestDataPaced: a message is read DataPace bytes a Stutter, however fast
// the bot sends it: a message sent in one write takes a read for every 4
// of its bytes, and its end is still found.
func TestDataPaced(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{DataPace: 4}, Events{}, mode, nil)
			c := r.dial(t)
			runScript(t, c, []step{
				{"", banner},
				{"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
					"250 " + testHost + "\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"},
			})
			msg := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz\r\n", 10) + ".\r\n"
			c.send(msg + "QUIT\r\n")
			c.expect(queued + "221 2.0.0 Bye\r\n")
			c.expectEOF()
			if n, want := r.tp.paced.Load(), uint64(len(msg)+3)/4; n < want {
				t.Errorf("%d paced reads for a %d-byte message at 4 bytes each, want %d", n, len(msg), want)
			}
		})
	}
}

func TestQueueIDsDiffer(t *testing.T) {
	r := newRig(t, Config{}, Events{}, "fd", nil)
	c := r.dial(t)
	c.expect(banner)
	c.send("HELO x\r\n")
	c.expect("250 " + testHost + "\r\n")
	seen := map[string]bool{}
	for range 3 {
		c.send("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n")
		c.expect("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
		id := c.expect(queued)
		if seen[id] {
			t.Fatalf("queue ID repeated: %q", id)
		}
		seen[id] = true
	}
}

// A session can enter the tarpit in the middle of a dialog.
func TestStart(t *testing.T) {
	cases := []struct {
		name  string
		start Start
		steps []step
	}{
		{"trap hit mid-transaction", Start{
			Greeted: true, InMail: true, Reply: "250 2.1.5 Ok\r\n", Source: store.SourceTrap,
			Pending: []byte("RCPT TO:<more@foreign.example>\r\nDATA\r\n"),
		}, []step{
			{"", "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"},
			{"body\r\n.\r\n", queued},
			{"QUIT\r\n", "221 2.0.0 Bye\r\n"},
			{"", eof},
		}},
		{"early talker before the banner", Start{Pending: []byte("EHLO eager\r\n")}, []step{
			{"", banner + ehlo},
			{"MAIL FROM:<x@y>\r\n", "250 2.1.0 Ok\r\n"},
		}},
		{"greeted, nothing owed", Start{Greeted: true}, []step{
			{"NOOP\r\n", "250 2.0.0 Ok\r\n"}, // no second banner
		}},
		{"greeted, pending only", Start{Greeted: true, Pending: []byte("HELO a\r\nRCPT TO:<b@c>\r\n")}, []step{
			{"", "250 " + testHost + "\r\n503 5.5.1 Error: need MAIL command\r\n"},
		}},
		{"not greeted, with a reply", Start{Reply: "451 4.7.1 Try again later\r\n"}, []step{
			{"", banner + "451 4.7.1 Try again later\r\n"},
		}},
		{"pending with half a line", Start{Greeted: true, InMail: true, Pending: []byte("RCPT TO:<a@")}, []step{
			{"b>\r\n", "250 2.1.5 Ok\r\n"},
		}},
	}
	for _, mode := range modes {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				r := newRig(t, Config{}, Events{}, mode, func() Start {
					s := tc.start
					s.Pending = append([]byte(nil), s.Pending...)
					return s
				})
				runScript(t, r.dial(t), tc.steps)
			})
		}
	}
}

// The reply bytes come out one per Stutter: in many separate reads, and
// no sooner than the stutter allows.
func TestStutter(t *testing.T) {
	const stutter = 5 * time.Millisecond
	r := newRig(t, Config{Stutter: stutter}, Events{}, "fd", nil)
	start := time.Now()
	c := r.dial(t)
	c.expect(banner)
	if elapsed, min := time.Since(start), time.Duration(len(banner)-1)*stutter; elapsed < min {
		t.Errorf("banner took %v, want at least %v", elapsed, min)
	}
	if c.reads < 4 {
		t.Errorf("banner came in %d reads, want it stuttered over many", c.reads)
	}
}

func TestMaxConns(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{MaxConns: 2, Stutter: time.Hour}, Events{}, mode, nil)
			r.dial(t)
			r.dial(t)
			for range 2 {
				if !<-r.held {
					t.Fatal("Hold refused below MaxConns")
				}
			}
			c := r.dial(t)
			if <-r.held {
				t.Fatal("Hold accepted above MaxConns")
			}
			c.expectEOF()
			st := r.tp.Stats()
			if st.Held != 2 || st.Refused != 1 || st.Sessions != 2 {
				t.Errorf("Stats = %+v, want Held 2, Refused 1, Sessions 2", st)
			}
		})
	}
}

func TestMaxBytes(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var ev events
			r := newRig(t, Config{MaxBytes: 4096}, ev.funcs(), mode, nil)
			c := r.dial(t)
			runScript(t, c, []step{
				{"", banner},
				{"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
					"250 " + testHost + "\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"},
			})
			line := strings.Repeat("z", 98) + "\r\n"
			for range 64 {
				if _, err := io.WriteString(c.c, line); err != nil {
					break // already dropped
				}
			}
			c.expectEOF()
			d := ev.waitDone(t)
			if d.bytesIn <= 4096 || d.msgs != 0 {
				t.Errorf("Done bytesIn=%d msgs=%d, want > 4096 and 0", d.bytesIn, d.msgs)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{IdleTimeout: 50 * time.Millisecond}, Events{}, mode, nil)
			c := r.dial(t)
			c.expect(banner)
			c.send("NOOP") // never finished: not a command
			c.expectEOF()
		})
	}
}

func TestMaxDuration(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			// A bot that keeps talking is still thrown out at MaxDuration,
			// even in the middle of a reply.
			r := newRig(t, Config{MaxDuration: 100 * time.Millisecond}, Events{}, mode, nil)
			c := r.dial(t)
			c.send(strings.Repeat("NOOP\r\n", 1000))
			c.c.SetReadDeadline(time.Now().Add(ioWait))
			b, _ := io.ReadAll(c.c)
			if !strings.HasPrefix(banner+strings.Repeat("250 2.0.0 Ok\r\n", 1000), string(b)) {
				t.Errorf("got %q, want a prefix of the dialog", b)
			}
			if len(b) >= len(banner)+1000*len("250 2.0.0 Ok\r\n") {
				t.Errorf("the whole dialog went out; MaxDuration did not cut it")
			}
		})
	}
}

// events records what the tarpit reported.
type events struct {
	mu    sync.Mutex
	mail  []string
	rcpt  []string
	relay []string
	told  []Final
	held  []Start
	addrs []netip.Addr
	conns map[Conn]bool // every Conn an event named
	done  chan doneEvent
}

type doneEvent struct {
	conn    Conn
	client  netip.Addr
	held    time.Duration
	bytesIn int64
	msgs    int
}

func (e *events) funcs() Events {
	e.done = make(chan doneEvent, 4096)
	e.conns = map[Conn]bool{}
	// note records one event of connection c for client a under the lock.
	note := func(c Conn, a netip.Addr, add func()) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.conns[c] = true
		e.addrs = append(e.addrs, a)
		add()
	}
	into := func(list *[]string) func(Conn, netip.Addr, string) {
		return func(c Conn, a netip.Addr, s string) { note(c, a, func() { *list = append(*list, s) }) }
	}
	return Events{
		Held: func(c Conn, a netip.Addr, st Start) {
			st.Pending = nil
			note(c, a, func() { e.held = append(e.held, st) })
		},
		Mail:  into(&e.mail),
		Rcpt:  into(&e.rcpt),
		Relay: into(&e.relay),
		Told: func(c Conn, a netip.Addr, f Final) {
			note(c, a, func() { e.told = append(e.told, f) })
		},
		Done: func(c Conn, a netip.Addr, held time.Duration, n int64, msgs int) {
			e.done <- doneEvent{c, a, held, n, msgs}
		},
	}
}

func (e *events) waitDone(t testing.TB) doneEvent {
	t.Helper()
	select {
	case d := <-e.done:
		return d
	case <-time.After(ioWait):
		t.Fatal("no Done event")
		return doneEvent{}
	}
}

func TestEvents(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var ev events
			r := newRig(t, Config{}, ev.funcs(), mode, nil)
			c := r.dial(t)
			send := []string{
				"EHLO bot\r\n",
				"MAIL FROM:<Spam@Bot.Example> SIZE=100\r\n",
				"RCPT TO:<trap@foreign.example>\r\n",
				"RCPT TO: <\"quoted local\"@x.example>\r\n",
				"DATA\r\n", "a\r\n.\r\n",
				"MAIL FROM:<>\r\n", "RCPT TO:bare@y.example\r\n", "DATA\r\n", "b\r\n.\r\n",
				"QUIT\r\n",
			}
			var total int64
			for _, s := range send {
				total += int64(len(s))
			}
			c.send(strings.Join(send, ""))
			c.c.SetReadDeadline(time.Now().Add(ioWait))
			io.ReadAll(c.c)
			d := ev.waitDone(t)

			want := netip.MustParseAddr("127.0.0.1")
			if d.client != want || d.bytesIn != total || d.msgs != 2 || d.held <= 0 {
				t.Errorf("Done(%v, %v, %d, %d), want (%v, >0, %d, 2)", d.client, d.held, d.bytesIn, d.msgs, want, total)
			}
			ev.mu.Lock()
			defer ev.mu.Unlock()
			if got := strings.Join(ev.mail, "|"); got != "Spam@Bot.Example|" {
				t.Errorf("Mail events %q", got)
			}
			if got := strings.Join(ev.rcpt, "|"); got != `trap@foreign.example|"quoted local"@x.example|bare@y.example` {
				t.Errorf("Rcpt events %q", got)
			}
			for _, a := range ev.addrs {
				if a != want {
					t.Errorf("event for client %v, want %v", a, want)
				}
			}
			// One connection: every event names the same Conn as Done.
			if len(ev.conns) != 1 || !ev.conns[d.conn] {
				t.Errorf("events named %d connections, want only Done's", len(ev.conns))
			}
			if len(ev.held) != 1 || ev.held[0].Source != store.SourceTrap {
				t.Errorf("Held events %+v, want one with the Start's source", ev.held)
			}
			if fmt.Sprint(ev.told) != "[accept accept]" {
				t.Errorf("Told events %v, want two accepts", ev.told)
			}
			st := r.tp.Stats()
			if st.Held != 0 || st.Sessions != 1 || st.HeldSeconds <= 0 || st.HeldNow != 0 {
				t.Errorf("Stats = %+v after the session ended", st)
			}
			// Both messages were told 250 (a connection from the
			// start, with no source: the fake relay's answer).
			if st.Dropped+st.Deferred+st.Refused5xx != 2 {
				t.Errorf("Stats counts %d dropped, %d deferred, %d refused messages; want 2 in all", st.Dropped, st.Deferred, st.Refused5xx)
			}
		})
	}
}

// Close drops every held connection, whatever it was doing, reports each
// one Done, and refuses later ones.
func TestClose(t *testing.T) {
	var ev events
	tp, err := New(Config{Hostname: testHost, Stutter: time.Hour}, ev.funcs())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const n = 20
	var clients []net.Conn
	for i := range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		var sc net.Conn = s
		if i%2 == 1 {
			sc = wrapped{s}
		}
		st := Start{}
		if i%3 == 0 {
			st = Start{Greeted: true} // waiting for input rather than writing
		}
		if !tp.Hold(sc, netip.MustParseAddr("127.0.0.1"), st) {
			t.Fatal("Hold refused")
		}
	}
	time.Sleep(10 * time.Millisecond)
	if st := tp.Stats(); st.Held != n || st.HeldNow <= 0 || st.HeldNow > st.HeldSeconds {
		t.Fatalf("Stats = %+v, want Held %d and 0 < HeldNow <= HeldSeconds", st, n)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tp.Stats().Held; got != 0 {
		t.Errorf("Held = %d after Close", got)
	}
	if len(ev.done) != n {
		t.Errorf("%d Done events, want %d", len(ev.done), n)
	}
	for _, c := range clients {
		(&client{t: t, c: c}).expectEOF()
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if tp.Hold(s, netip.MustParseAddr("127.0.0.1"), Start{}) {
		t.Error("Hold accepted after Close")
	}
	(&client{t: t, c: c}).expectEOF()
	if err := tp.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A thousand bots at once all get their banner.
func TestThousandHeld(t *testing.T) {
	const n = 1000
	r := newRig(t, Config{}, Events{}, "fd", nil)
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = r.dial(t)
	}
	for range n {
		if !<-r.held {
			t.Fatal("Hold refused")
		}
	}
	if st := r.tp.Stats(); st.Held != n {
		t.Errorf("Held = %d, want %d", st.Held, n)
	}
	for _, c := range clients {
		c.expect(banner)
	}
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Hostname: "two words"},
		{Hostname: "mx\r\n250 x"},
		{Hostname: "mx", Stutter: -1},
		{Hostname: "mx", MaxConns: -1},
	} {
		if tp, err := New(cfg, Events{}); err == nil {
			tp.Close()
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// New limits apply to held connections without closing any: a lower cap
// refuses only new ones, a reply under way goes on at the new stutter, and
// a shorter MaxDuration ends the overdue at the next sweep.
func TestSetLimits(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{MaxConns: 3, Stutter: 20 * time.Millisecond}, Events{}, mode, nil)
			a, b := r.dial(t), r.dial(t)
			for range 2 {
				if !<-r.held {
					t.Fatal("Hold refused below MaxConns")
				}
			}
			if err := r.tp.SetLimits(Config{MaxConns: 1, Stutter: testStutter}); err != nil {
				t.Fatal(err)
			}
			c := r.dial(t)
			if <-r.held {
				t.Fatal("Hold accepted a connection above the new MaxConns")
			}
			c.expectEOF()
			a.expect(banner)
			b.expect(banner)
			if st := r.tp.Stats(); st.Held != 2 {
				t.Fatalf("after SetLimits: %d held, want the 2 held before it", st.Held)
			}
			if err := r.tp.SetLimits(Config{MaxConns: 1, MaxDuration: 50 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			a.expectEOF()
			b.expectEOF()
			if err := r.tp.SetLimits(Config{MaxConns: -1}); err == nil {
				t.Error("SetLimits with a negative MaxConns: no error")
			}
		})
	}
}

// The last reply to a message depends on why the host is black: a proven
// bot is told its message was queued; any weaker reason (the operator, a
// config blacklist, DNS lists, filters, escalation, network lists,
// imports, or none known) gets the same stutter and words, then 451, so a
// real MTA keeps the message; Finals changes either.
func TestFinalByReason(t *testing.T) {
	refused := map[store.Source]Final{store.SourceOperator: Reject, store.SourceTrap: Defer}
	cases := []struct {
		src    store.Source
		finals map[store.Source]Final
		want   string
	}{
		{store.SourceTrap, nil, queued},
		{store.SourceBait, nil, queued},
		{store.SourceEarlyTalk, nil, queued},
		{store.SourceSmuggling, nil, queued},
		{store.SourceRelay, nil, queued},
		{store.SourceOperator, nil, ReplyDeferred},
		{store.SourceDNSBL, nil, ReplyDeferred},
		{store.SourceFeedback, nil, ReplyDeferred},
		{store.SourceEscalation, nil, ReplyDeferred},
		{store.SourceNetList, nil, ReplyDeferred},
		{store.SourceImport, nil, ReplyDeferred},
		{store.SourceUnknown, nil, ReplyDeferred},
		{store.SourceOperator, refused, ReplyRefused},
		{store.SourceTrap, refused, ReplyDeferred},
		{store.SourceDNSBL, refused, ReplyDeferred},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d", tc.src, len(tc.finals)), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{Finals: tc.finals}, Events{}, "fd", func() Start { return Start{Source: tc.src} })
			c := r.dial(t)
			runScript(t, c, []step{
				{"", banner},
				{"EHLO mta.example\r\n", ehlo},
				{"MAIL FROM:<a@mta.example>\r\n", "250 2.1.0 Ok\r\n"},
				{"RCPT TO:<alice@example.test>\r\n", "250 2.1.5 Ok\r\n"},
				{"DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n"},
			})
			before := c.reads
			runScript(t, c, []step{
				{"Subject: hello\r\n\r\nhi\r\n.\r\n", tc.want},
				{"QUIT\r\n", "221 2.0.0 Bye\r\n"},
				{"", eof},
			})
			// Stuttered like every other reply: many reads, not one.
			if n := c.reads - before; n < 10 {
				t.Errorf("the last reply and the 221 came in %d reads, want them stuttered", n)
			}
		})
	}
}

func TestNewRejectsFinal(t *testing.T) {
	if _, err := New(Config{Hostname: testHost, Finals: map[store.Source]Final{store.SourceDNSBL: 9}}, Events{}); err == nil {
		t.Error("New accepted a final reply that is none of Accept, Defer, Reject")
	}
	for _, f := range []Final{Accept, Defer, Reject} {
		if g, err := ParseFinal(f.String()); err != nil || g != f {
			t.Errorf("ParseFinal(%q) = %v, %v", f, g, err)
		}
	}
	if _, err := ParseFinal("drop"); err == nil {
		t.Error(`ParseFinal("drop") succeeded`)
	}
}

// A host black for a weak reason that asks the tarpit to relay to a
// domain that is not ours proves itself a bot: the Relay event reports
// it, and its message is "queued" and dropped like a proven bot's. A
// recipient at one of our domains, a domain literal or a postmaster
// without a domain changes nothing; neither does a foreign domain when
// moat does not know its domains, or from a host that is proven already.
func TestRelayAttempt(t *testing.T) {
	ours := func(d string) bool { return strings.EqualFold(strings.TrimSuffix(d, "."), "example.test") }
	cases := []struct {
		name  string
		src   store.Source
		ours  func(string) bool
		rcpts []string
		relay string
		final string
	}{
		{"dnsbl, ours only", store.SourceDNSBL, ours,
			[]string{"alice@example.test", "Bob@EXAMPLE.test.", "x@[192.0.2.1]", "postmaster"}, "", ReplyDeferred},
		{"dnsbl, foreign", store.SourceDNSBL, ours,
			[]string{"alice@example.test", "victim@foreign.example", "other@else.example"}, "victim@foreign.example", queued},
		{"operator, foreign", store.SourceOperator, ours,
			[]string{"victim@foreign.example"}, "victim@foreign.example", queued},
		{"trap, foreign", store.SourceTrap, ours, []string{"victim@foreign.example"}, "", queued},
		{"domains unknown", store.SourceDNSBL, nil, []string{"victim@foreign.example"}, "", ReplyDeferred},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ev events
			r := newRig(t, Config{Ours: tc.ours}, ev.funcs(), "fd", func() Start { return Start{Source: tc.src} })
			c := r.dial(t)
			steps := []step{
				{"", banner},
				{"EHLO bot\r\n", ehlo},
				{"MAIL FROM:<s@bot.example>\r\n", "250 2.1.0 Ok\r\n"},
			}
			for _, rc := range tc.rcpts {
				steps = append(steps, step{"RCPT TO:<" + rc + ">\r\n", "250 2.1.5 Ok\r\n"})
			}
			steps = append(steps, step{"DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n"},
				step{"x\r\n.\r\n", tc.final}, step{"QUIT\r\n", "221 2.0.0 Bye\r\n"}, step{"", eof})
			runScript(t, c, steps)
			ev.waitDone(t)
			ev.mu.Lock()
			defer ev.mu.Unlock()
			if got := strings.Join(ev.relay, "|"); got != tc.relay {
				t.Errorf("Relay events %q, want %q (once, at the first foreign recipient)", got, tc.relay)
			}
		})
	}
}

// A reload's final replies apply to the messages that end after it, in
// connections already held.
func TestSetLimitsFinals(t *testing.T) {
	r := newRig(t, Config{}, Events{}, "fd", func() Start { return Start{Source: store.SourceDNSBL} })
	c := r.dial(t)
	runScript(t, c, []step{
		{"", banner},
		{"HELO mta.example\r\n", "250 " + testHost + "\r\n"},
		{"MAIL FROM:<a@mta.example>\r\n", "250 2.1.0 Ok\r\n"},
		{"RCPT TO:<alice@example.test>\r\n", "250 2.1.5 Ok\r\n"},
		{"DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n"},
		{"x\r\n.\r\n", ReplyDeferred},
	})
	if err := r.tp.SetLimits(Config{Stutter: testStutter, Finals: map[store.Source]Final{store.SourceDNSBL: Reject}}); err != nil {
		t.Fatal(err)
	}
	runScript(t, c, []step{
		{"MAIL FROM:<a@mta.example>\r\n", "250 2.1.0 Ok\r\n"},
		{"RCPT TO:<alice@example.test>\r\n", "250 2.1.5 Ok\r\n"},
		{"DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n"},
		{"x\r\n.\r\n", ReplyRefused},
	})
	if err := r.tp.SetLimits(Config{Finals: map[store.Source]Final{store.SourceDNSBL: 7}}); err == nil {
		t.Error("SetLimits took a final reply that is none of Accept, Defer, Reject")
	}
}

// TestReplay: the cost of a session is the bytes of the tarpit's own
// replies to it, banner included, at one byte per stutter.
func TestReplay(t *testing.T) {
	cfg := Config{Hostname: "mx.example", Stutter: time.Second}
	script := "EHLO bot\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n\r\nbuy\r\n.\r\nQUIT\r\n"
	c, err := Replay(cfg, Start{Source: store.SourceTrap}, []byte(script))
	if err != nil {
		t.Fatal(err)
	}
	tp, _ := newTarpit(cfg, Events{})
	want := len(tp.words.Banner()) + len(tp.words.Offer().EHLO(false)) + len(smtp.ReplyMailOK) + len(smtp.ReplyRcptOK) +
		len(smtp.ReplyData) + len(queuedPrefix) + queueIDLen + 2 + len(smtp.ReplyBye)
	// "Subject: x\r\n\r\nbuy\r\n.\r\n" is 22 bytes: two reads of 16.
	if c.Bytes != want || c.Reads != 2 || c.Time != time.Duration(want+2)*time.Second || c.Messages != 1 {
		t.Errorf("Replay = %+v, want %d bytes, 2 reads, %ds, 1 message", c, want, want+2)
	}
	// A host black for a weaker reason is told 451 at the end of DATA:
	// its sender keeps the message.
	c, _ = Replay(cfg, Start{Source: store.SourceDNSBL}, []byte(script))
	if wantD := want - (len(queuedPrefix) + queueIDLen + 2) + len(ReplyDeferred); c.Bytes != wantD || c.Messages != 0 || c.Deferred != 1 || c.Refused != 0 {
		t.Errorf("Replay for a DNSBL-listed host = %+v, want %d bytes, no message queued, 1 deferred", c, wantD)
	}
	cfg.Finals = map[store.Source]Final{store.SourceDNSBL: Reject}
	if c, _ = Replay(cfg, Start{Source: store.SourceDNSBL}, []byte(script)); c.Messages != 0 || c.Deferred != 0 || c.Refused != 1 {
		t.Errorf("Replay with dnsbl = reject: %+v, want 1 refused", c)
	}
	cfg.Finals = nil
	// A session moved here mid-dialog owes only its reply, then the rest.
	c, _ = Replay(cfg, Start{Greeted: true, InMail: true, Reply: smtp.ReplyRcptOK}, []byte("QUIT\r\n"))
	if c.Bytes != len(smtp.ReplyRcptOK)+len(smtp.ReplyBye) {
		t.Errorf("greeted Replay = %d bytes, want %d", c.Bytes, len(smtp.ReplyRcptOK)+len(smtp.ReplyBye))
	}
	// A message takes one stutter per DataPace bytes.
	cfg.DataPace = 4
	if c, _ := Replay(cfg, Start{}, []byte(script)); c.Reads != 6 {
		t.Errorf("Replay at 4 bytes a stutter: %d reads, want 6", c.Reads)
	}
	// MaxDuration bounds the time.
	cfg.MaxDuration = time.Minute
	if c, _ := Replay(cfg, Start{}, []byte(script)); c.Time != time.Minute {
		t.Errorf("Replay time = %s, want the 1m cap", c.Time)
	}
}

// TestReplayCut: a message whose "queued" reply would come after
// MaxDuration is not one the client believes it sent.
func TestReplayCut(t *testing.T) {
	cfg := Config{Hostname: "mx.example", Stutter: time.Second, MaxDuration: 100 * time.Second}
	c, err := Replay(cfg, Start{Source: store.SourceTrap}, []byte("EHLO bot\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Messages != 0 || c.Deferred != 0 || c.Time != 100*time.Second {
		t.Errorf("Replay = %+v, want no message and the 100s cap", c)
	}
}
