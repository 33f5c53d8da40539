// Package smtp owns the SMTP wire primitives moat speaks on both sides: a
// command-line reader with bounded memory, a strict DATA reader, the command
// and address parsers, and the reply writer and reader.
//
// Everything here works on bytes handed to it; the package never dials,
// listens, sets deadlines or logs. Callers own the connection and its
// deadlines, so a slow or silent client is their concern, not ours. What this
// package guarantees is that no input, however hostile, makes it hold more
// than a few KiB per connection or hand on bytes that a downstream server
// could read differently from us (SMTP smuggling).
package smtp

import (
	"bufio"
	"errors"
	"io"
)

// MaxCommandLine is the usual limit for a command line, excluding its line
// end. RFC 5321 (4.5.3.1.4) says 512 octets including CRLF, but real
// clients send longer lines with long addresses and several ESMTP
// parameters, and rejecting those would lose mail.
const MaxCommandLine = 2048

// bufferSize is the size of the buffer between the connection and us: the
// whole per-connection read memory of this package.
const bufferSize = 4096

var (
	// ErrLineTooLong means a command line exceeded the limit. The rest of
	// the line has been read and discarded, so the next ReadLine starts at
	// the next command and the dialog stays in sync.
	ErrLineTooLong = errors.New("smtp: line too long")

	// ErrBareLF means DATA contained a LF not preceded by CR.
	ErrBareLF = errors.New("smtp: bare LF in DATA")

	// ErrBareCR means DATA contained a CR not followed by LF.
	ErrBareCR = errors.New("smtp: bare CR in DATA")

	// ErrNUL means DATA contained a NUL next to a line end or at the start
	// of a line, where a receiver that drops NULs would read another line.
	ErrNUL = errors.New("smtp: NUL next to a line end in DATA")

	// ErrSmuggling means DATA contained a lone dot between line ends other
	// than CRLF: an end of data to some receivers and not to others.
	ErrSmuggling = errors.New("smtp: lax end of data in DATA")

	// ErrTooLarge means the message exceeded the size limit.
	ErrTooLarge = errors.New("smtp: message too large")

	// ErrDrainLimit means Drain read its whole allowance without finding
	// the end of the message; the caller should close the connection.
	ErrDrainLimit = errors.New("smtp: end of DATA not found within drain limit")
)

// Reader reads SMTP command lines and DATA from a client with bounded
// memory. It is not safe for concurrent use.
type Reader struct {
	br   *bufio.Reader
	line []byte // scratch for lines that span more than one buffer fill
}

// NewReader returns a Reader over r with a 4 KiB buffer.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, bufferSize)}
}

// ReadLine reads one command line of at most max bytes, not counting the
// line end, and returns it without the line end.
//
// A line may end in CRLF or in a bare LF: RFC 5321 wants CRLF, but, like
// Postfix, we accept LF in commands because nothing downstream parses our
// command lines, so there is nothing to smuggle, and refusing would lose mail
// from sloppy clients. A CR before the LF is stripped; other CRs are left in
// the line for the parser to refuse.
//
// If the line is longer than max, ReadLine reads on and discards through the
// end of that line, then returns ErrLineTooLong. If the input ends in the
// middle of a line it returns io.ErrUnexpectedEOF (a half line is never a
// command); if it ends between lines, io.EOF.
func (r *Reader) ReadLine(max int) (string, error) {
	b, err := readLine(r.br, max, &r.line)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// readLine reads a line of at most max bytes (not counting its CRLF or LF)
// from br, using *scratch when the line spans several buffer fills so the
// memory held stays below max+2. The result aliases br's buffer or
// *scratch and is valid until the next read.
func readLine(br *bufio.Reader, max int, scratch *[]byte) ([]byte, error) {
	frag, err := br.ReadSlice('\n')
	if err == nil {
		// The common case: the whole line was in the buffer.
		return trimLine(frag, max)
	}
	line := (*scratch)[:0]
	tooLong := false
	for {
		if !tooLong {
			if len(line)+len(frag) > max+2 { // room for the CRLF
				tooLong = true
			} else {
				line = append(line, frag...)
			}
		}
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && (len(line) > 0 || tooLong) {
				err = io.ErrUnexpectedEOF
			}
			*scratch = line[:0]
			return nil, err
		}
		frag, err = br.ReadSlice('\n')
	}
	*scratch = line[:0]
	if tooLong {
		return nil, ErrLineTooLong
	}
	return trimLine(line, max)
}

// trimLine strips the LF and a CR before it from a line read by
// ReadSlice('\n') and checks the length of what is left.
func trimLine(b []byte, max int) ([]byte, error) {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	if len(b) > max {
		return nil, ErrLineTooLong
	}
	return b, nil
}
