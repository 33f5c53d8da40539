package tarpit

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"math"

	"moat/internal/classify"
	"moat/internal/smtp"
	"moat/internal/store"
)

// The dialog looks like a Postfix that relays for anyone: every MAIL and
// RCPT is accepted, nothing is ever sent on. A message's last reply depends
// on why the host is black (Config.Finals): a proven bot's is "queued", a
// host black for a weaker reason is told to try again later. Its
// words are the grey dialog's (internal/smtp's Words and Reply constants),
// for the same commands in the same state, limits included, so that a bot
// that compares cannot tell a held connection from a grey one but by its
// pace. Only the recipients differ: the grey dialog defers them, the tarpit
// takes them all, which is what a bot hopes to find.
const (
	queuedPrefix = "250 2.0.0 Ok: queued as "
	queueIDLen   = 12
)

// The states of the DATA end detector (see scanData); dotCommand is the
// command phase, any other state the data phase. One byte says both.
const (
	dotCommand   = 0 // not in DATA: reading commands
	dotNone      = 1 // in the middle of a line
	dotCR        = 2 // after CR
	dotLineStart = 3 // after CRLF, or just after the 354
	dotDot       = 4 // after CRLF "."
	dotDotCR     = 5 // after CRLF "." CR
)

// maxLine bounds a command line, as the grey dialog does (it is the same
// limit, so the same line gets the same answer): longer ones get "line too
// long". The buffer is only allocated when a line spans two reads, starting
// small, and is dropped as soon as the line is complete.
const (
	maxLine          = smtp.MaxCommandLine
	initialLineAlloc = 64
)

// feed runs the dialog over client bytes until it owes a reply (or p is
// used up) and returns how many bytes it used. Commands are answered one at
// a time: a pipelined command is not even looked at before the reply to the
// previous one has been stuttered out in full.
func (s *session) feed(p []byte, now int64) int {
	i := 0
	for i < len(p) && s.out == "" && !s.quit {
		if s.dot != dotCommand {
			n, end := s.scanData(p[i:])
			i += n
			// A bot that is sending a message is alive; do not idle it out.
			s.idle = now
			if end {
				s.dot = dotCommand
				s.stage, s.rcpts = stageHelo, 0
				s.msgs = min(s.msgs+1, math.MaxUint16)
				s.out = s.final()
			}
			continue
		}
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			s.keep(p[i:])
			return len(p)
		}
		line := p[i : i+j]
		i += j + 1
		if s.line != nil || s.overlong {
			s.keep(line)
			line = s.line
		} else if len(bytes.TrimSuffix(line, []byte{'\r'})) > maxLine {
			s.overlong = true
		}
		if s.overlong {
			s.fault(smtp.ReplyTooLong)
		} else if s.cmds = min(s.cmds+1, math.MaxUint16); int(s.cmds) > s.t.limits().MaxCommands {
			s.quit, s.out = true, s.t.words.TooManyCommands
		} else {
			s.command(line)
		}
		s.line, s.overlong = nil, false
		s.idle = now
	}
	return i
}

// keep adds part of a command line that has not ended yet, within maxLine.
func (s *session) keep(p []byte) {
	if s.overlong {
		return
	}
	if len(s.line)+len(p) > maxLine+1 { // room for the CR
		s.line, s.overlong = nil, true
		return
	}
	if s.line == nil {
		s.line = make([]byte, 0, max(initialLineAlloc, len(p)))
	}
	s.line = append(s.line, p...)
}

// scanData discards message content and watches for its end. Only
// CRLF "." CRLF ends DATA: a bare LF "." LF, or CR "." CR, is content. A
// receiver that accepted the bare forms would see a different end of message
// than a strict one behind it, which is how SMTP smuggling works; the tarpit
// delivers nothing, but it must not look lax either. The detector is one
// byte of state, so a message costs nothing however long it is.
func (s *session) scanData(p []byte) (n int, end bool) {
	d := s.dot
	for i, c := range p {
		switch {
		case c == '\r':
			if d == dotDot {
				d = dotDotCR
			} else {
				d = dotCR
			}
		case c == '\n' && d == dotCR:
			d = dotLineStart
		case c == '\n' && d == dotDotCR:
			s.dot = dotCommand
			return i + 1, true
		case c == '.' && d == dotLineStart:
			d = dotDot
		default:
			d = dotNone
		}
	}
	s.dot = d
	return len(p), false
}

// command answers one command line (without its LF), as the grey dialog
// would in the same state.
func (s *session) command(line []byte) {
	verb, arg := split(bytes.TrimSuffix(line, []byte{'\r'}))
	t := s.t
	switch v := verbOf(verb); v {
	case "":
		if len(verb) == 0 {
			s.fault(smtp.ReplyBadSyntax)
			return
		}
		s.fault(smtp.ReplyUnknown)
	case "EHLO", "HELO":
		switch {
		case len(arg) == 0 && v == "EHLO":
			s.fault(smtp.ReplyEhloSyntax)
		case len(arg) == 0:
			s.fault(smtp.ReplyHeloSyntax)
		case v == "EHLO":
			// The grey dialog's EHLO as it is now: it follows what the
			// backend offers.
			s.stage, s.rcpts, s.out = stageHelo, 0, t.words.Offer().EHLO(false)
		default:
			s.stage, s.rcpts, s.out = stageHelo, 0, t.words.HELO()
		}
	case "MAIL":
		addr, params, err := smtp.ParseMail(string(arg))
		switch {
		case s.stage == stageGreeting:
			s.fault(smtp.ReplyNeedHelo)
		case s.inMail():
			s.fault(smtp.ReplyNestedMail)
		case err != nil:
			s.fault(smtp.ReplyMailSyntax)
		default:
			mp, err := smtp.CheckMailParams(params, t.words.Offer().Ext)
			if err != nil {
				s.fault(err.(*smtp.ParamError).Reply)
				return
			}
			if !smtp.ASCII(addr) && !mp.SMTPUTF8 {
				s.fault(smtp.ReplyNeedUTF8)
				return
			}
			s.stage, s.out = stageMail, smtp.ReplyMailOK
			if mp.SMTPUTF8 {
				s.stage = stageMailUTF8
			}
			if t.ev.Mail != nil {
				t.ev.Mail(Conn{s}, s.client, addr)
			}
		}
	case "RCPT":
		if !s.inMail() {
			s.fault(smtp.ReplyNeedMail)
			return
		}
		addr, params, err := smtp.ParseRcpt(string(arg))
		if err != nil {
			s.fault(smtp.ReplyRcptSyntax)
			return
		}
		utf8 := s.stage == stageMailUTF8
		if _, err := smtp.CheckRcptParams(params, t.words.Offer().Ext, utf8); err != nil {
			s.fault(err.(*smtp.ParamError).Reply)
			return
		}
		if !smtp.ASCII(addr) && !utf8 {
			s.fault(smtp.ReplyNeedUTF8)
			return
		}
		if s.rcpts = min(s.rcpts+1, math.MaxUint16); int(s.rcpts) > t.limits().MaxRcpts {
			s.out = smtp.ReplyTooManyRcpts
			return
		}
		// Any domain, foreign ones too: this is an open relay.
		s.out = smtp.ReplyRcptOK
		if t.ev.Rcpt != nil {
			t.ev.Rcpt(Conn{s}, s.client, addr)
		}
		s.relay(addr)
	case "DATA":
		switch {
		case !s.inMail():
			s.fault(smtp.ReplyNeedRcpt)
		case s.rcpts == 0:
			s.fault(smtp.ReplyNoRcpts)
		default:
			s.dot, s.out = dotLineStart, smtp.ReplyData
		}
	case "RSET":
		if s.stage > stageHelo {
			s.stage = stageHelo
		}
		s.rcpts, s.out = 0, smtp.ReplyOK
	case "NOOP":
		s.out = smtp.ReplyOK
	case "VRFY":
		if len(arg) == 0 {
			s.fault(smtp.ReplyVrfySyntax)
			return
		}
		s.out = smtp.ReplyVrfy
	case "QUIT":
		s.quit, s.out = true, smtp.ReplyBye
	case "STARTTLS":
		if t.words.Offer().Ext.StartTLS {
			// A Postfix whose certificate went missing says this;
			// the tarpit never speaks TLS.
			s.out = smtp.ReplyNoTLS
			return
		}
		s.fault(smtp.ReplyUnknown)
	}
}

// split is smtp.ParseCommand on bytes: the verb runs to the first blank,
// the argument is the rest, trimmed. It allocates nothing, so a held
// connection costs no garbage per command.
func split(line []byte) (verb, arg []byte) {
	line = bytes.Trim(line, " \t")
	i := bytes.IndexAny(line, " \t")
	if i < 0 {
		return line, nil
	}
	return line[:i], bytes.Trim(line[i+1:], " \t")
}

// verbs are the commands the tarpit answers other than with "command not
// recognized", as the grey dialog does.
var verbs = [...]string{"EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "VRFY", "QUIT", "STARTTLS"}

// verbOf returns which of verbs v is, in any case of ASCII letters only,
// as smtp.ParseCommand upper-cases: no Unicode folding may turn an odd
// verb into a known one. "" for none.
func verbOf(v []byte) string {
	for _, name := range verbs {
		if len(v) != len(name) {
			continue
		}
		match := true
		for i := range v {
			if c := v[i]; c != name[i] && c != name[i]+'a'-'A' {
				match = false
				break
			}
		}
		if match {
			return name
		}
	}
	return ""
}

// fault answers a client error; past max_errors the session ends, as the
// grey dialog's does.
func (s *session) fault(reply string) {
	if s.errs = min(s.errs+1, math.MaxUint8); int(s.errs) > s.t.limits().MaxErrors {
		s.quit, s.out = true, s.t.words.TooManyErrors
		return
	}
	s.out = reply
}

// relay notes a relay attempt (classify.RelayAttempt). From a host black
// for a weaker reason it changes this session's last reply to the relay's,
// and the Relay event lets classify weigh it for the host (precedence
// applies: an operator's entry stands).
func (s *session) relay(addr string) {
	t := s.t
	if !classify.RelayAttempt(s.source, smtp.Domain(addr), t.limits().Ours) {
		return
	}
	s.source = store.SourceRelay
	if t.ev.Relay != nil {
		t.ev.Relay(Conn{s}, s.client, addr)
	}
}

// final returns the reply at the end of DATA for why the host is black,
// and reports it.
func (s *session) final() string {
	f := s.t.limits().finals[s.source]
	s.t.messages[f-Accept].Add(1)
	if s.t.ev.Told != nil {
		s.t.ev.Told(Conn{s}, s.client, f)
	}
	switch f {
	case Defer:
		return ReplyDeferred
	case Reject:
		return ReplyRefused
	}
	return s.queued()
}

// queued returns the end-of-DATA reply with a fresh queue ID.
func (s *session) queued() string {
	var b [len(queuedPrefix) + queueIDLen + 2]byte
	copy(b[:], queuedPrefix)
	putQueueID(b[len(queuedPrefix):len(queuedPrefix)+queueIDLen], s.t.queueID())
	copy(b[len(b)-2:], "\r\n")
	return string(b[:])
}

// queueID returns a 48-bit ID that looks random and is different every
// time: a counter through a bijection of 48-bit integers (xor-shifts and
// multiplications by odd numbers), keyed by a random seed.
func (t *Tarpit) queueID() uint64 {
	const mask = 1<<48 - 1
	x := (t.qidSeq.Add(1) + t.qidSeed) & mask
	x ^= x >> 23
	x = (x * 0x5DEECE66D) & mask
	x ^= x >> 19
	x = (x * 0x2545F4914F6D) & mask // odd
	x ^= x >> 27
	return x
}

// putQueueID writes id as upper-case hex, as Postfix writes short queue IDs.
func putQueueID(dst []byte, id uint64) {
	const digits = "0123456789ABCDEF"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[id&15]
		id >>= 4
	}
}

func randSeed() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}
