package tarpit

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
)

// The dialog looks like a Postfix that relays for anyone: every MAIL and
// RCPT is accepted, every message is "queued", nothing is ever sent on. The
// replies are Postfix's own words so that a bot cannot tell it is held.
const (
	replyMailOK     = "250 2.1.0 Ok\r\n"
	replyRcptOK     = "250 2.1.5 Ok\r\n"
	replyOK         = "250 2.0.0 Ok\r\n"
	replyData       = "354 End data with <CR><LF>.<CR><LF>\r\n"
	replyBye        = "221 2.0.0 Bye\r\n"
	replyUnknown    = "502 5.5.2 Error: command not recognized\r\n"
	replyBadSyntax  = "500 5.5.2 Error: bad syntax\r\n"
	replyTooLong    = "500 5.5.0 Error: line too long\r\n"
	replyNestedMail = "503 5.5.1 Error: nested MAIL command\r\n"
	replyNeedMail   = "503 5.5.1 Error: need MAIL command\r\n"
	replyNeedRcpt   = "503 5.5.1 Error: need RCPT command\r\n"
	replyMailSyntax = "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	replyRcptSyntax = "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
	replyVrfySyntax = "501 5.5.4 Syntax: VRFY address\r\n"
	replyEhloSyntax = "501 Syntax: EHLO hostname\r\n"
	replyHeloSyntax = "501 Syntax: HELO hostname\r\n"
	queuedPrefix    = "250 2.0.0 Ok: queued as "
	queueIDLen      = 12
	vrfyPrefix      = "252 2.0.0 "
)

// Dialog phases, and the states of the DATA end detector (see scanData).
const (
	phaseCommand = 0
	phaseData    = 1

	dotNone      = 0 // in the middle of a line
	dotCR        = 1 // after CR
	dotLineStart = 2 // after CRLF, or just after the 354
	dotDot       = 3 // after CRLF "."
	dotDotCR     = 4 // after CRLF "." CR
)

// maxLine bounds a command line: RFC 5321 says 512 octets, bots pad and some
// real clients send long ESMTP parameters, so we allow some slack and answer
// "line too long" past it. The buffer is only allocated when a line spans two
// reads, starting small, and is dropped as soon as the line is complete.
const (
	maxLine          = 1000
	initialLineAlloc = 64
)

// feed runs the dialog over client bytes until it owes a reply (or p is
// used up) and returns how many bytes it used. Commands are answered one at
// a time: a pipelined command is not even looked at before the reply to the
// previous one has been stuttered out in full.
func (s *session) feed(p []byte, now int64) int {
	i := 0
	for i < len(p) && s.out == "" && !s.quit {
		if s.phase == phaseData {
			n, end := s.scanData(p[i:])
			i += n
			// A bot that is sending a message is alive; do not idle it out.
			s.idle = now
			if end {
				s.phase = phaseCommand
				s.inMail = false
				s.msgs++
				s.out = s.queued()
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
		} else if len(line) > maxLine {
			s.overlong = true
		}
		if s.overlong {
			s.out = replyTooLong
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
	if len(s.line)+len(p) > maxLine {
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
			s.dot = dotLineStart
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

// command answers one command line (without its LF).
func (s *session) command(line []byte) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	verb, arg := line, []byte(nil)
	if sp := bytes.IndexByte(line, ' '); sp >= 0 {
		verb, arg = line[:sp], bytes.TrimLeft(line[sp+1:], " ")
	}
	t := s.t
	switch {
	case len(bytes.TrimSpace(line)) == 0:
		s.out = replyBadSyntax
	case is(verb, "EHLO"), is(verb, "HELO"):
		switch {
		case len(arg) == 0 && is(verb, "EHLO"):
			s.out = replyEhloSyntax
		case len(arg) == 0:
			s.out = replyHeloSyntax
		case is(verb, "EHLO"):
			s.inMail, s.out = false, t.ehlo
		default:
			s.inMail, s.out = false, t.helo
		}
	case is(verb, "MAIL"):
		addr, ok := path(arg, "FROM:")
		switch {
		case s.inMail:
			s.out = replyNestedMail
		case !ok:
			s.out = replyMailSyntax
		default:
			s.inMail, s.out = true, replyMailOK
			if t.ev.Mail != nil {
				t.ev.Mail(s.client, string(addr))
			}
		}
	case is(verb, "RCPT"):
		addr, ok := path(arg, "TO:")
		switch {
		case !s.inMail:
			s.out = replyNeedMail
		case !ok:
			s.out = replyRcptSyntax
		default:
			// Any domain, foreign ones too: this is an open relay.
			s.out = replyRcptOK
			if t.ev.Rcpt != nil {
				t.ev.Rcpt(s.client, string(addr))
			}
		}
	case is(verb, "DATA"):
		// No RCPT bookkeeping: a session that entered with InMail may
		// have had its RCPT answered by the grey dialog.
		if !s.inMail {
			s.out = replyNeedRcpt
			return
		}
		s.phase, s.dot, s.out = phaseData, dotLineStart, replyData
	case is(verb, "RSET"):
		s.inMail, s.out = false, replyOK
	case is(verb, "NOOP"):
		s.out = replyOK
	case is(verb, "VRFY"):
		if len(arg) == 0 {
			s.out = replyVrfySyntax
			return
		}
		s.out = vrfyPrefix + printable(arg) + "\r\n"
	case is(verb, "QUIT"):
		s.quit, s.out = true, replyBye
	default:
		// STARTTLS and AUTH land here too: they are not advertised, and a
		// bot that insists gets the same answer as for any other noise.
		s.out = replyUnknown
	}
}

// is reports whether verb is the command name, in any case.
func is(verb []byte, name string) bool {
	return len(verb) == len(name) && bytes.EqualFold(verb, []byte(name))
}

// path extracts the address of a MAIL FROM or RCPT TO argument as sent:
// what is inside the angle brackets, or the first word if there are none.
func path(arg []byte, prefix string) ([]byte, bool) {
	if len(arg) < len(prefix) || !bytes.EqualFold(arg[:len(prefix)], []byte(prefix)) {
		return nil, false
	}
	rest := bytes.TrimLeft(arg[len(prefix):], " ")
	if len(rest) > 0 && rest[0] == '<' {
		end := bytes.IndexByte(rest, '>')
		if end < 0 {
			return nil, false
		}
		return rest[1:end], true
	}
	if sp := bytes.IndexByte(rest, ' '); sp >= 0 {
		rest = rest[:sp]
	}
	return rest, len(rest) > 0
}

// printable returns p with control bytes removed, so that an echoed
// argument cannot end our reply line early or smuggle a second one.
func printable(p []byte) string {
	b := make([]byte, 0, len(p))
	for _, c := range p {
		if c >= ' ' && c != 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
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
