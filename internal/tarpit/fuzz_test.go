package tarpit

import (
	"strings"
	"testing"

	"moat/internal/smtp"
)

// FuzzFeed throws arbitrary client bytes, split at an arbitrary size, at
// the dialog: it must not panic, must use every byte unless the client
// quit, must keep its line buffer bounded, and must answer only in whole
// CRLF-terminated lines.
func FuzzFeed(f *testing.F) {
	f.Add([]byte("EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"), uint8(3))
	f.Add([]byte("MAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\nx\n.\nRSET\r\n.\r\n"), uint8(1))
	f.Add([]byte("VRFY \x00\r\r\n\r\n\n"), uint8(200))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		s := newSession(t)
		replies := converse(s, in, int(chunk)+1)
		if len(s.line) > maxLine {
			t.Errorf("line buffer %d bytes", len(s.line))
		}
		for _, r := range replies {
			if !strings.HasSuffix(r, "\r\n") || strings.Count(r, "\n") != strings.Count(r, "\r\n") ||
				strings.Count(r, "\r") != strings.Count(r, "\r\n") {
				t.Errorf("reply %q is not whole CRLF lines", r)
			}
		}
		if !s.quit && len(replies) > 0 && replies[len(replies)-1] == smtp.ReplyBye {
			t.Error("221 without quit")
		}
	})
}

// FuzzScanData checks the end-of-DATA detector against the obvious
// definition (the first CRLF "." CRLF, counting the CRLF of the DATA
// command) for any body split anywhere.
func FuzzScanData(f *testing.F) {
	f.Add([]byte("a\n.\nb\r.\rc\r\n.\r\n"), uint8(1))
	f.Add([]byte(".\r\n"), uint8(0))
	f.Add([]byte("x\r\n..\r\n.\r\r\n.\r\n"), uint8(5))
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		checkScanData(t, body, int(chunk)+1)
	})
}
