package smtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxReplyLine bounds a reply line read by ReadReply, excluding its line end.
// RFC 5321 (4.5.3.1.5) says 512 including CRLF; servers stay well below
// this.
const MaxReplyLine = 2048

// ErrMalformedReply means a server sent something that is not an SMTP
// reply. The conversation cannot go on: the caller should close it and
// answer its own client with a 4xx.
var ErrMalformedReply = errors.New("smtp: malformed reply")

// Reply is an SMTP reply: a code and one or more lines of text.
type Reply struct {
	Code  int
	Lines []string // the text of each line, without the code; may begin with an enhanced status code ("4.7.1 Try again later")
}

// String returns the reply as it goes on the wire: "250-a\r\n250 b\r\n".
// A reply without lines is a single line with the code alone.
func (r Reply) String() string {
	return string(r.appendTo(nil))
}

// OneLine is the reply on one line, its lines joined by spaces: for a log
// line or an error.
func (r Reply) OneLine() string {
	return strings.TrimSpace(strings.ReplaceAll(r.String(), "\r\n", " "))
}

func (r Reply) appendTo(b []byte) []byte {
	if len(r.Lines) == 0 {
		b = strconv.AppendInt(b, int64(r.Code), 10)
		return append(b, "\r\n"...)
	}
	for i, l := range r.Lines {
		b = strconv.AppendInt(b, int64(r.Code), 10)
		if i < len(r.Lines)-1 {
			b = append(b, '-')
		} else {
			b = append(b, ' ')
		}
		b = append(b, l...)
		b = append(b, "\r\n"...)
	}
	return b
}

// Permanent reports whether the reply is 5xx: the client should give up.
func (r Reply) Permanent() bool { return 500 <= r.Code && r.Code < 600 }

// ReadReply reads a reply, possibly of several lines, from a server. Lines
// may end in CRLF or LF (we trust the server's framing no more than
// needed, but refusing its LF would only lose mail). It returns
// ErrMalformedReply, wrapped with the reason, for a line without a 3-digit
// code in 200-599, a separator other than '-' or ' ', a code that changes
// within the reply, a line longer than MaxReplyLine, or more than maxLines
// lines. It returns io.EOF if the input ends before the reply starts and
// io.ErrUnexpectedEOF if it ends within it.
func ReadReply(r *bufio.Reader, maxLines int) (Reply, error) {
	var (
		reply   Reply
		scratch []byte
	)
	for {
		line, err := readLine(r, MaxReplyLine, &scratch)
		if err != nil {
			if err == io.EOF && len(reply.Lines) > 0 {
				err = io.ErrUnexpectedEOF
			}
			if err == ErrLineTooLong {
				err = fmt.Errorf("%w: line longer than %d bytes", ErrMalformedReply, MaxReplyLine)
			}
			return Reply{}, err
		}
		if len(reply.Lines) == maxLines {
			return Reply{}, fmt.Errorf("%w: more than %d lines", ErrMalformedReply, maxLines)
		}
		code, last, text, err := parseReplyLine(line)
		if err != nil {
			return Reply{}, err
		}
		if len(reply.Lines) > 0 && code != reply.Code {
			return Reply{}, fmt.Errorf("%w: code %d after %d", ErrMalformedReply, code, reply.Code)
		}
		reply.Code = code
		reply.Lines = append(reply.Lines, text)
		if last {
			return reply, nil
		}
	}
}

// parseReplyLine splits "250-text", "250 text" or "250".
func parseReplyLine(l []byte) (code int, last bool, text string, err error) {
	if len(l) < 3 || l[0] < '2' || l[0] > '5' || !isDigit(l[1]) || !isDigit(l[2]) {
		return 0, false, "", fmt.Errorf("%w: bad code in %q", ErrMalformedReply, truncate(l))
	}
	code = int(l[0]-'0')*100 + int(l[1]-'0')*10 + int(l[2]-'0')
	switch {
	case len(l) == 3:
		return code, true, "", nil
	case l[3] == ' ':
		return code, true, string(l[4:]), nil
	case l[3] == '-':
		return code, false, string(l[4:]), nil
	}
	return 0, false, "", fmt.Errorf("%w: bad separator in %q", ErrMalformedReply, truncate(l))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// truncate shortens what a server sent before it goes into an error
// message, and thus into logs.
func truncate(l []byte) string {
	if len(l) > 64 {
		return string(l[:64]) + "..."
	}
	return string(l)
}
