package smtp

import (
	"bufio"
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

func TestReplyPermanent(t *testing.T) {
	for code, want := range map[int]bool{220: false, 250: false, 354: false, 421: false, 451: false, 550: true, 554: true, 199: false, 600: false} {
		if got := (Reply{Code: code}).Permanent(); got != want {
			t.Errorf("%d: Permanent = %v, want %v", code, got, want)
		}
	}
}

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
