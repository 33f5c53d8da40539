package smtp

import (
	"io"
	"strings"
	"testing"
)

func TestReadLine(t *testing.T) {
	type result struct {
		line string
		err  error
	}
	long := strings.Repeat("x", 5000) // longer than the reader's buffer
	tests := []struct {
		name string
		in   string
		max  int
		want []result // then the next call must return io.EOF
	}{
		{"CRLF", "EHLO a\r\nQUIT\r\n", 100, []result{{"EHLO a", nil}, {"QUIT", nil}}},
		{"bare LF", "EHLO a\nQUIT\n", 100, []result{{"EHLO a", nil}, {"QUIT", nil}}},
		{"empty lines", "\r\n\n", 100, []result{{"", nil}, {"", nil}}},
		{"CR inside kept", "a\rb\r\n", 100, []result{{"a\rb", nil}}},
		{"only the last CR stripped", "a\r\r\n", 100, []result{{"a\r", nil}}},
		{"NUL kept", "a\x00b\r\n", 100, []result{{"a\x00b", nil}}},
		{"exactly max with CRLF", "0123456789\r\nQUIT\r\n", 10, []result{{"0123456789", nil}, {"QUIT", nil}}},
		{"exactly max with LF", "0123456789\nQUIT\r\n", 10, []result{{"0123456789", nil}, {"QUIT", nil}}},
		{"one over max", "0123456789A\r\nQUIT\r\n", 10, []result{{"", ErrLineTooLong}, {"QUIT", nil}}},
		{"one over max with LF", "0123456789A\nQUIT\r\n", 10, []result{{"", ErrLineTooLong}, {"QUIT", nil}}},
		{"max with CR before LF counts CR as line end", "012345678\r\r\n", 10, []result{{"012345678\r", nil}}},
		{"longer than the buffer", long + "\r\nQUIT\r\n", MaxCommandLine, []result{{"", ErrLineTooLong}, {"QUIT", nil}}},
		{"longer than the buffer, allowed", long + "\r\nQUIT\r\n", 6000, []result{{long, nil}, {"QUIT", nil}}},
		{"longer than the buffer, allowed, LF", long + "\nQUIT\r\n", 5000, []result{{long, nil}, {"QUIT", nil}}},
		{"longer than the buffer, one over", long + "\r\nQUIT\r\n", 4999, []result{{"", ErrLineTooLong}, {"QUIT", nil}}},
		{"zero max", "\r\na\r\n", 0, []result{{"", nil}, {"", ErrLineTooLong}}},
	}
	for _, tt := range tests {
		for _, src := range sources {
			r := NewReader(src.wrap(strings.NewReader(tt.in)))
			for i, w := range tt.want {
				line, err := r.ReadLine(tt.max)
				if line != w.line || err != w.err {
					t.Errorf("%s/%s: call %d = %.20q, %v; want %.20q, %v", tt.name, src.name, i, line, err, w.line, w.err)
				}
			}
			if line, err := r.ReadLine(tt.max); err != io.EOF {
				t.Errorf("%s/%s: last call = %.20q, %v; want EOF", tt.name, src.name, line, err)
			}
		}
	}
}

func TestReadLineEOF(t *testing.T) {
	tests := []struct {
		in  string
		err error
	}{
		{"", io.EOF},
		{"QUIT", io.ErrUnexpectedEOF},
		{"QUIT\r", io.ErrUnexpectedEOF},
		{strings.Repeat("x", 9000), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, src := range sources {
			r := NewReader(src.wrap(strings.NewReader(tt.in)))
			if line, err := r.ReadLine(MaxCommandLine); line != "" || err != tt.err {
				t.Errorf("%s: ReadLine(%.20q) = %q, %v; want %v", src.name, tt.in, line, err, tt.err)
			}
		}
	}
}

// TestPending: the bytes read from the connection but not yet parsed are
// handed over once, in order, and nothing else.
func TestPending(t *testing.T) {
	r := NewReader(strings.NewReader("EHLO a\r\nMAIL FROM:<>\r\n"))
	if _, err := r.ReadLine(MaxCommandLine); err != nil {
		t.Fatal(err)
	}
	if got, want := string(r.Pending()), "MAIL FROM:<>\r\n"; got != want {
		t.Errorf("Pending after one line = %q, want %q", got, want)
	}
	if got := r.Pending(); got != nil {
		t.Errorf("Pending a second time = %q, want nothing", got)
	}
}
