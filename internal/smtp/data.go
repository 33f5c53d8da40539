package smtp

import (
	"bytes"
	"errors"
	"io"
	"strings"
)

// errDrained is what Read returns after Drain abandoned a message that had
// no error of its own, so that a caller reading on by mistake never takes
// the truncated stream for a whole message.
var errDrained = errors.New("smtp: DATA was drained")

// DataReader yields one message's DATA section exactly as the client sent
// it, after checking every byte. See Reader.Data.
type DataReader struct {
	r   *Reader
	max int64

	body int64 // bytes checked, not counting the terminating ".\r\n"

	// ok is how many checked bytes sit at the front of the Reader's buffer,
	// waiting to be yielded. Checking never consumes a byte it cannot yet
	// decide on (a CR whose next byte has not arrived, a dot at the start of
	// a line that may be the end), so whatever is left in the buffer past ok
	// is exactly what the client sent after the last decided byte.
	ok  int
	bol bool   // the first undecided byte starts a line
	end bool   // the terminator has been checked (it is within ok, or yielded)
	err error  // returned once the ok bytes before it have been yielded
	seq string // what ErrSmuggling saw
}

// Data returns a reader over one message's DATA section, to be called after
// the reply 354. It yields the bytes as the client sent them (dot-stuffing
// and CRLFs kept) up to and including the terminating ".\r\n" line, then
// io.EOF. Its output is therefore exactly what moat may write to a backend
// server that answered 354, and the Reader is left on the next command.
//
// Only CRLF "." CRLF ends the message; the first line of DATA counts as
// following a CRLF, so a first line "." is an empty message.
//
// Anything else that a server somewhere may take for a line end, or for the
// end of the message, is refused: if we and the backend could disagree on
// where the message ends, a client could hide a second message in the
// first, sent with our authority (SMTP smuggling). Postfix calls this
// smtpd_forbid_bare_newline; chasquid refuses bare LF the same way. The
// refusals come in two kinds, because they mean different things:
//
//   - ErrBareLF, ErrBareCR: a LF without CR, or a CR without LF, inside a
//     line. Some broken but legitimate software writes them; the message is
//     refused and nothing more is held against the client.
//   - ErrNUL: a NUL at the start of a line, right after the dot that starts
//     one, or right before a line end. A receiver that drops NUL bytes, or
//     ends a line at one, would read a different line there (".\x00\r\n"
//     is "." to it); nothing legitimate puts a NUL next to a line end.
//   - ErrSmuggling: a line that, NUL bytes aside, is a lone dot, with a
//     line end other than CRLF on either side of it (<LF>.<LF>, <CR>.<CR>,
//     <LF>.<CR><LF>, <CR><LF>.<LF>, <CR><LF><NUL>.<CR><LF>, ...). That is
//     an end of data to some receiver and content to another, written so
//     that it is both: it can only be an attempt to smuggle. Seq describes
//     the sequence.
//
// Every error is returned before the offending byte is yielded, so nothing
// past a violation is ever handed on; in particular a CR is only yielded
// together with its LF, and a dot that starts a line only once the rest of
// its line shows it is not an end.
//
// max bounds the message as sent, dot-stuffing included, the terminating
// ".\r\n" not included. A Read that would yield more returns ErrTooLarge
// instead. max <= 0 means no limit.
//
// After an error, Drain reads on to the end of the message so the dialog can
// go on.
func (r *Reader) Data(max int64) *DataReader {
	return &DataReader{r: r, max: max, bol: true}
}

// Seq describes the sequence behind ErrSmuggling, the line ends as <CR>,
// <LF> and NUL bytes as <NUL> ("<CR><LF>.<LF>"); "" for any other error.
func (d *DataReader) Seq() string { return d.seq }

// Read yields checked DATA bytes. It returns io.EOF after the terminating
// ".\r\n", and ErrBareLF, ErrBareCR, ErrNUL, ErrSmuggling, ErrTooLarge or
// the connection's error once all the bytes before the problem have been
// yielded. Errors are sticky.
func (d *DataReader) Read(p []byte) (int, error) {
	if d.ok == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if d.end {
			return 0, io.EOF
		}
		d.check()
		if d.ok == 0 {
			return 0, d.err // check only stops with nothing decided on an error
		}
	}
	n := min(d.ok, len(p))
	b, _ := d.r.br.Peek(n) // cannot fail: the ok bytes are buffered
	copy(p, b)
	d.r.br.Discard(n)
	d.ok -= n
	return n, nil
}

// check decides on as many buffered bytes as it can, reading from the
// connection only when nothing at all can be decided without more input. It
// is called with ok == 0 and no end or error yet, and returns with ok > 0,
// or an error set.
func (d *DataReader) check() {
	br := d.r.br
	want := 1 // bytes needed to decide on anything
	for {
		win, err := br.Peek(max(want, br.Buffered()))
		if len(win) < want {
			if err == io.EOF {
				// The client closed before the end of the message.
				err = io.ErrUnexpectedEOF
			}
			d.err = err
			return
		}
		i, need := d.scan(win)
		if i > 0 || d.err != nil || d.end {
			d.ok = i
			return
		}
		want = need
	}
}

// maxLaxNULs bounds the NUL bytes looked through on either side of a dot
// when telling a smuggled end from other bad bytes. More NULs are still
// refused (ErrNUL), only not recognised as smuggling.
const maxLaxNULs = 8

// laxDot matches b against a lone dot between NULs, followed by a line end
// of any kind: \x00{0,8} "." \x00{0,8} (CR | LF). It returns n > 0, the
// length of the match up to and including that CR or LF, if b matches;
// n == 0 if it does not; and n < 0 if b ends before it can tell (-n is the
// length b would need).
func laxDot(b []byte) int {
	i := 0
	for i < len(b) && b[i] == 0 && i < maxLaxNULs {
		i++
	}
	if i == len(b) {
		return -(i + 1)
	}
	if b[i] != '.' {
		return 0
	}
	i++
	for j := 0; i < len(b) && b[i] == 0 && j < maxLaxNULs; j++ {
		i++
	}
	if i == len(b) {
		return -(i + 1)
	}
	if b[i] == '\r' || b[i] == '\n' {
		return i + 1
	}
	return 0
}

// laxSeq is laxDot, extended by the LF after a final CR so that Seq
// shows the whole sequence: <CR><LF>.<CR><LF>, not <CR><LF>.<CR>.
func laxSeq(b []byte) int {
	n := laxDot(b)
	if n <= 0 || b[n-1] != '\r' {
		return n
	}
	if n == len(b) {
		return -(n + 1)
	}
	if b[n] == '\n' {
		n++
	}
	return n
}

// describe writes line ends and NUL bytes of b so that a log can show
// them: "<CR><LF>.<LF>".
func describe(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		switch c {
		case '\r':
			s.WriteString("<CR>")
		case '\n':
			s.WriteString("<LF>")
		case 0:
			s.WriteString("<NUL>")
		default:
			s.WriteByte(c)
		}
	}
	return s.String()
}

// scan decides on the bytes of win, a view of the buffer starting at the
// first undecided byte, and returns how many it accepted. If it stops
// because a decision needs more bytes than win holds, need is the window
// size that would do. It sets d.end at the terminator and d.err at a
// violation; the accepted bytes are those before the offending one.
func (d *DataReader) scan(win []byte) (accepted, need int) {
	i := 0
	for i < len(win) {
		seg := win[i:]
		if d.bol && (seg[0] == '.' || seg[0] == 0) {
			// Either the end of the message, a smuggled end, or a line that
			// starts with a dot (dot-stuffed or not: we hand it on as it is).
			if bytes.HasPrefix(seg, []byte(".\r\n")) {
				// The terminator is not part of the message, so it does not
				// count against max: a message of exactly max bytes gets
				// through.
				d.end = true
				return i + 3, 0
			}
			if len(seg) < 3 && bytes.HasPrefix([]byte(".\r\n"), seg) {
				return i, i + len(seg) + 1
			}
			switch n := laxSeq(seg); {
			case n < 0:
				return i, i - n
			case n > 0:
				// The CRLF that started this line is behind us.
				return i, d.fail(ErrSmuggling, "<CR><LF>"+describe(seg[:n]))
			case seg[0] == 0, seg[1] == 0:
				d.err = ErrNUL
				return i, 0
			}
			// An ordinary line; the checks below apply to it, dot included.
		}

		// Take the rest of the line, or as much of it as win holds. A line
		// must end in CRLF and hold no other CR or LF, and no NUL right
		// before its end.
		var (
			n    int   // bytes of seg that pass
			eol  bool  // seg[:n] ends with CRLF
			more int   // seg[n] needs this many bytes from it on to be decided
			err  error // what is wrong with seg[n], if anything
		)
		end := bytes.IndexAny(seg, "\r\n\x00")
		switch {
		case end < 0:
			n = len(seg)
		case seg[end] == '\n':
			n, err = end, ErrBareLF
		case end+1 == len(seg):
			n, more = end, 2 // a CR or NUL whose next byte decides
		case seg[end] == '\r' && seg[end+1] == '\n':
			n, eol = end+2, true
		case seg[end] == '\r':
			n, err = end, ErrBareCR
		case seg[end+1] == '\r' || seg[end+1] == '\n':
			n, err = end, ErrNUL
		default:
			n = end + 1 // a NUL inside a line: harmless, it is content
		}

		if d.max > 0 && d.body+int64(n) > d.max {
			full := n
			n = int(d.max - d.body)
			if eol && n == full-1 {
				// Never yield a CR without its LF.
				n--
			}
			eol, err, more = false, ErrTooLarge, 0
		}
		d.body += int64(n)
		i += n
		// Where the next line starts matters for the end, and for Drain
		// after an error: "a.\r\n" cut after the "a" must not leave Drain
		// taking the dot for the start of a line.
		if eol {
			d.bol = true
		} else if n > 0 {
			d.bol = false
		}
		if err == ErrBareLF || err == ErrBareCR {
			// A bare line end followed by a lone dot and another line end
			// of any kind is an end of data to a lax receiver.
			lax := laxSeq(win[i+1:])
			if lax < 0 {
				return i, i + 1 - lax
			}
			if lax > 0 {
				return i, d.fail(ErrSmuggling, describe(win[i:i+1+lax]))
			}
		}
		if err != nil {
			d.err = err
			return i, 0
		}
		if more > 0 {
			return i, i + more
		}
	}
	return i, 0
}

// fail records a violation and what it looked like.
func (d *DataReader) fail(err error, seq string) int {
	d.err, d.seq = err, seq
	return 0
}

// Drain reads on and discards until the end of the message, so the dialog
// can go on after ErrTooLarge, or after the caller gave up on a message for
// its own reasons. Bytes checked but not yet yielded are discarded too.
//
// Drain tolerates bare CR, LF and NUL but, like Read, stops only at CRLF "." CRLF
// (or a first line "."): the client will send its next command after the
// real end, and that is the only end we recognise. A client could keep us
// reading forever, so Drain gives up with ErrDrainLimit after maxDrain bytes.
// It returns io.ErrUnexpectedEOF if the input ends first, and the
// connection's error if Read already met one. After Drain, Read keeps
// returning its error (or an error of its own if there was none).
func (d *DataReader) Drain(maxDrain int64) error {
	br := d.r.br
	if d.ok > 0 {
		br.Discard(d.ok)
		d.ok = 0
	}
	switch d.err {
	case nil:
		d.err = errDrained
	case ErrBareLF, ErrBareCR, ErrNUL, ErrSmuggling, ErrTooLarge:
	default:
		if !d.end { // the connection failed, or Drain already gave up
			return d.err
		}
	}
	if d.end {
		return nil
	}

	// How far we are into "\r\n.\r\n".
	const (
		mid   = iota // within a line
		cr           // after a CR
		bol          // at the start of a line (after CRLF)
		dot          // after "\r\n."
		dotCR        // after "\r\n.\r"
	)
	state := mid
	if d.bol {
		state = bol
	}
	var n int64
	for {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				d.err = err
				return err
			}
		}
		win, _ := br.Peek(br.Buffered())
		for i, c := range win {
			if n >= maxDrain {
				br.Discard(i)
				d.err = ErrDrainLimit
				return ErrDrainLimit
			}
			n++
			switch {
			case c == '\r' && state == dot:
				state = dotCR
			case c == '\r':
				state = cr
			case c == '\n' && state == cr:
				state = bol
			case c == '\n' && state == dotCR:
				br.Discard(i + 1)
				d.end = true
				return nil
			case c == '.' && state == bol:
				state = dot
			default:
				state = mid
			}
		}
		br.Discard(len(win))
	}
}
