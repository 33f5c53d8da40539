package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestReplyString(t *testing.T) {
	tests := []struct {
		r    Reply
		want string
	}{
		{Reply{250, []string{"ok"}}, "250 ok\r\n"},
		{Reply{250, []string{"mx.example", "PIPELINING", "8BITMIME"}}, "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"},
		{Reply{451, []string{"4.7.1 Try again later"}}, "451 4.7.1 Try again later\r\n"},
		{Reply{354, nil}, "354\r\n"},
		{Reply{250, []string{""}}, "250 \r\n"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestReplyClass(t *testing.T) {
	tests := []struct {
		code                           int
		positive, temporary, permanent bool
	}{
		{220, true, false, false},
		{250, true, false, false},
		{354, true, false, false},
		{421, false, true, false},
		{451, false, true, false},
		{550, false, false, true},
		{554, false, false, true},
		{199, false, false, false},
		{600, false, false, false},
	}
	for _, tt := range tests {
		r := Reply{Code: tt.code}
		if r.Positive() != tt.positive || r.Temporary() != tt.temporary || r.Permanent() != tt.permanent {
			t.Errorf("%d: Positive, Temporary, Permanent = %v, %v, %v; want %v, %v, %v", tt.code,
				r.Positive(), r.Temporary(), r.Permanent(), tt.positive, tt.temporary, tt.permanent)
		}
	}
}

// countingWriter counts Write calls.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func TestWriteReply(t *testing.T) {
	tests := []struct {
		code int
		text string
		want string // "" means an error
	}{
		{250, "ok", "250 ok\r\n"},
		{250, "mx.example\nPIPELINING\nSIZE 1000", "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"},
		{451, "4.7.1 Try again later", "451 4.7.1 Try again later\r\n"},
		{250, "", "250 \r\n"},
		{250, "a\r\nb", "250-a\r\n250 b\r\n"},
		// A CR in text must not end a line early.
		{250, "ok\r550 no", "250 ok550 no\r\n"},
		{199, "x", ""},
		{600, "x", ""},
	}
	for _, tt := range tests {
		var w countingWriter
		err := WriteReply(&w, tt.code, tt.text)
		if tt.want == "" {
			if err == nil {
				t.Errorf("WriteReply(%d, %q) succeeded", tt.code, tt.text)
			}
			continue
		}
		if err != nil || w.String() != tt.want {
			t.Errorf("WriteReply(%d, %q) wrote %q, %v; want %q", tt.code, tt.text, w.String(), err, tt.want)
		}
		if w.writes != 1 {
			t.Errorf("WriteReply(%d, %q) made %d writes, want 1", tt.code, tt.text, w.writes)
		}
	}
	if err := WriteReply(iotestErrWriter{}, 250, "ok"); err == nil {
		t.Errorf("WriteReply to a failing writer succeeded")
	}
}

type iotestErrWriter struct{}

func (iotestErrWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestReadReply(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want Reply
		err  error // nil, io.EOF, io.ErrUnexpectedEOF or ErrMalformedReply
		rest string
	}{
		{"single", "250 ok\r\nNEXT", 10, Reply{250, []string{"ok"}}, nil, "NEXT"},
		{"multi", "250-a\r\n250-b\r\n250 c\r\n", 10, Reply{250, []string{"a", "b", "c"}}, nil, ""},
		{"LF only", "220-a\n220 b\n", 10, Reply{220, []string{"a", "b"}}, nil, ""},
		{"code alone", "354\r\n", 10, Reply{354, []string{""}}, nil, ""},
		{"empty text", "250 \r\n", 10, Reply{250, []string{""}}, nil, ""},
		{"enhanced code", "451 4.7.1 Try again later\r\n", 10, Reply{451, []string{"4.7.1 Try again later"}}, nil, ""},
		{"exactly max lines", "250-a\r\n250 b\r\n", 2, Reply{250, []string{"a", "b"}}, nil, ""},
		{"too many lines", "250-a\r\n250-b\r\n250 c\r\n", 2, Reply{}, ErrMalformedReply, ""},
		{"codes differ", "250-a\r\n251 b\r\n", 10, Reply{}, ErrMalformedReply, ""},
		{"no code", "hello\r\n", 10, Reply{}, ErrMalformedReply, ""},
		{"short code", "25\r\n", 10, Reply{}, ErrMalformedReply, ""},
		{"letters", "2x0 ok\r\n", 10, Reply{}, ErrMalformedReply, ""},
		{"1xx", "150 ok\r\n", 10, Reply{}, ErrMalformedReply, ""},
		{"6xx", "650 ok\r\n", 10, Reply{}, ErrMalformedReply, ""},
		{"bad separator", "250_ok\r\n", 10, Reply{}, ErrMalformedReply, ""},
		{"four digits", "2500 ok\r\n", 10, Reply{}, ErrMalformedReply, ""},
		{"too long", "250 " + strings.Repeat("x", MaxReplyLine) + "\r\n", 10, Reply{}, ErrMalformedReply, ""},
		{"longest", "250 " + strings.Repeat("x", MaxReplyLine-4) + "\r\n", 10, Reply{250, []string{strings.Repeat("x", MaxReplyLine-4)}}, nil, ""},
		{"nothing", "", 10, Reply{}, io.EOF, ""},
		{"cut in line", "250 o", 10, Reply{}, io.ErrUnexpectedEOF, ""},
		{"cut between lines", "250-a\r\n", 10, Reply{}, io.ErrUnexpectedEOF, ""},
	}
	for _, tt := range tests {
		for _, src := range sources {
			br := bufio.NewReader(src.wrap(strings.NewReader(tt.in)))
			got, err := ReadReply(br, tt.max)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Errorf("%s/%s: error %v, want %v", tt.name, src.name, err, tt.err)
				continue
			}
			if got.Code != tt.want.Code || !slices.Equal(got.Lines, tt.want.Lines) {
				t.Errorf("%s/%s: got %+v, want %+v", tt.name, src.name, got, tt.want)
			}
			if err != nil {
				continue
			}
			if rest, _ := io.ReadAll(br); string(rest) != tt.rest {
				t.Errorf("%s/%s: left %q, want %q", tt.name, src.name, rest, tt.rest)
			}
		}
	}
}
