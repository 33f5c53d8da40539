package tarpit

import (
	"strings"
	"testing"
	"unsafe"

	"moat/internal/smtp"
	"moat/internal/store"
)

// heldSize is what one held connection's fixed state costs (see the
// package doc and bench/tarpit.sh). Speaking the grey dialog's words and
// limits must not make it grow.
const heldSize = 176

func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > heldSize {
		t.Errorf("session is %d bytes, want at most %d: a held connection must not grow", n, heldSize)
	}
}

// newWordsSession is a session of a tarpit built with cfg, for driving
// the dialog by hand.
func newWordsSession(t *testing.T, cfg Config) *session {
	t.Helper()
	tp, err := newTarpit(cfg, Events{})
	if err != nil {
		t.Fatal(err)
	}
	return &session{t: tp, fd: -1, source: store.SourceTrap}
}

// talk feeds the lines and returns the replies; after a reply that ends
// the session (quit) it stops.
func talk(s *session, lines ...string) []string {
	return converse(s, []byte(strings.Join(lines, "\r\n")+"\r\n"), 1<<20)
}

// The tarpit's banner and EHLO are the grey dialog's, and follow them when
// the backend's extensions change; STARTTLS is offered when the grey
// dialog offers it, and answered like a Postfix whose TLS is broken.
func TestWordsAreTheGreyDialogs(t *testing.T) {
	w := smtp.NewWords("mx.test", true, true, 50000)
	s := newWordsSession(t, Config{Words: w})
	if got, want := w.Banner(), "220-mx.test ESMTP Postfix (Debian/GNU)\r\n220 mx.test ESMTP Postfix (Debian/GNU)\r\n"; got != want {
		t.Fatalf("banner %q, want %q (multi-line, as the grey dialog's with a greet delay)", got, want)
	}
	got := talk(s, "EHLO bot", "STARTTLS")
	if got[0] != w.Offer().EHLO(false) || !strings.Contains(got[0], "250-STARTTLS\r\n") || !strings.Contains(got[0], "SIZE 50000") {
		t.Errorf("EHLO %q, want the grey dialog's %q", got[0], w.Offer().EHLO(false))
	}
	if got[1] != smtp.ReplyNoTLS {
		t.Errorf("STARTTLS got %q, want %q", got[1], smtp.ReplyNoTLS)
	}

	// The backend now takes smaller messages and no DSN: the next EHLO
	// says so, as the grey dialog's does.
	if !w.Learn(smtp.Extensions{Size: 20000, EightBit: true}) {
		t.Fatal("Learn did not change the offer")
	}
	got = talk(s, "EHLO bot")
	if got[0] != w.Offer().EHLO(false) || !strings.Contains(got[0], "SIZE 20000") || strings.Contains(got[0], "DSN") {
		t.Errorf("EHLO after the backend changed: %q, want %q", got[0], w.Offer().EHLO(false))
	}
	got = talk(s, "MAIL FROM:<a@b.example> RET=FULL", "MAIL FROM:<a@b.example> SIZE=30000")
	if got[0] != "555 5.5.4 Unsupported option: RET\r\n" || got[1] != smtp.ReplyTooLarge {
		t.Errorf("MAIL with what is not offered now: %q", got)
	}
}

// The grey dialog's limits hold in the tarpit, with the same replies.
func TestLimits(t *testing.T) {
	w := smtp.NewWords("mx.test", false, false, 0)
	s := newWordsSession(t, Config{Words: w, MaxErrors: 2})
	got := talk(s, "XYZZY", "XYZZY", "XYZZY", "NOOP")
	if len(got) != 3 || got[2] != w.TooManyErrors || !s.quit {
		t.Errorf("three errors with max_errors 2: %q (quit %v); want the third answered %q and the end", got, s.quit, w.TooManyErrors)
	}

	s = newWordsSession(t, Config{Words: w, MaxCommands: 3})
	got = talk(s, "NOOP", "NOOP", "NOOP", "NOOP", "NOOP")
	if len(got) != 4 || got[3] != w.TooManyCommands || !s.quit {
		t.Errorf("four commands with max_commands 3: %q; want the fourth answered %q and the end", got, w.TooManyCommands)
	}

	s = newWordsSession(t, Config{Words: w, MaxRcpts: 2})
	got = talk(s, "HELO a", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "RCPT TO:<bad", "RCPT TO:<e@f.example>",
		"RCPT TO:<g@h.example>", "RSET", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>")
	want := []string{w.HELO(), smtp.ReplyMailOK, smtp.ReplyRcptOK, smtp.ReplyRcptSyntax, smtp.ReplyRcptOK,
		smtp.ReplyTooManyRcpts, smtp.ReplyOK, smtp.ReplyMailOK, smtp.ReplyRcptOK}
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("recipients with max_rcpts 2:\n got %q\nwant %q", got, want)
	}
}

// Answering the commands a held bot sends most allocates nothing: a held
// connection costs its fixed state and no garbage per command.
func TestFeedAllocatesNothing(t *testing.T) {
	s := newSession(t)
	lines := [][]byte{[]byte("EHLO bot.example\r\n"), []byte("NOOP\r\n"), []byte("rset\r\n"), []byte("XYZZY x\r\n")}
	allocs := testing.AllocsPerRun(100, func() {
		for _, l := range lines {
			s.out, s.cmds, s.errs, s.quit = "", 0, 0, false
			s.feed(l, 0)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations for EHLO, NOOP, RSET and an unknown command, want none", allocs)
	}
}
