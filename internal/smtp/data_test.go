package smtp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// sources are the ways a client's bytes may arrive: all at once, a byte at a
// time, in halves, or with the error together with the last bytes. State
// must carry across every boundary.
var sources = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"onebyte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"dataerr", iotest.DataErrReader},
}

// sinkSizes are the buffer sizes the caller reads DATA with.
var sinkSizes = []int{1, 2, 3, 7, 512, 64 << 10}

// readData reads DATA from in with a caller buffer of size bufSize and
// returns what it yielded and the error that stopped it.
func readData(d *DataReader, bufSize int) (string, error) {
	var out bytes.Buffer
	buf := make([]byte, bufSize)
	for {
		n, err := d.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String(), err
		}
		if n == 0 {
			return out.String(), errors.New("Read returned 0, nil")
		}
	}
}

func TestDataSmuggling(t *testing.T) {
	const next = "QUIT\r\n"
	tests := []struct {
		name string
		in   string // what the client sends after 354
		max  int64
		out  string // what Data must yield
		err  error
	}{
		// What a normal message looks like.
		{"simple", "Subject: x\r\n\r\nhello\r\n.\r\n", 0, "Subject: x\r\n\r\nhello\r\n.\r\n", io.EOF},
		{"empty message", ".\r\n", 0, ".\r\n", io.EOF},
		{"empty line then end", "\r\n.\r\n", 0, "\r\n.\r\n", io.EOF},
		{"dot-stuffed line", "a\r\n..\r\n.\r\n", 0, "a\r\n..\r\n.\r\n", io.EOF},
		{"dot-stuffed first line", "..\r\n.\r\n", 0, "..\r\n.\r\n", io.EOF},
		{"dot-stuffed text", "a\r\n..b\r\n.\r\n", 0, "a\r\n..b\r\n.\r\n", io.EOF},
		{"first line starts with dot", ".abc\r\n.\r\n", 0, ".abc\r\n.\r\n", io.EOF},
		{"dot then space is no end", "a\r\n. \r\nb\r\n.\r\n", 0, "a\r\n. \r\nb\r\n.\r\n", io.EOF},
		{"dot mid-line is no end", "a.\r\nb\r\n.\r\n", 0, "a.\r\nb\r\n.\r\n", io.EOF},
		{"NUL bytes inside a line pass", "a\x00b\r\n.\r\n", 0, "a\x00b\r\n.\r\n", io.EOF},
		{"NUL after a dot inside a line passes", "a.\x00b\r\n.\r\n", 0, "a.\x00b\r\n.\r\n", io.EOF},
		{"8bit passes", "\xff\xfe\r\n.\r\n", 0, "\xff\xfe\r\n.\r\n", io.EOF},

		// A bare line end inside a line: refused, but only that.
		{"bare LF mid-line", "ab\ncd\r\n.\r\n", 0, "ab", ErrBareLF},
		{"bare CR mid-line", "ab\rcd\r\n.\r\n", 0, "ab", ErrBareCR},
		{"CRCRLF", "a\r\r\n.\r\n", 0, "a", ErrBareCR},
		{"bare LF on second line", "a\r\nb\nc\r\n.\r\n", 0, "a\r\nb", ErrBareLF},
		{"bare LF before a proper end", "a\n\r\n.\r\n", 0, "a", ErrBareLF},
		{"LF LF.LF", "a\n\n.\nb\r\n.\r\n", 0, "a", ErrBareLF},
		{"bare LF then dot-stuffed", "a\n..\r\n.\r\n", 0, "a", ErrBareLF},
		{"LF-only message", "From: a\nSubject: b\n\nhi\n.\n", 0, "From: a", ErrBareLF},

		// NUL bytes where a receiver that drops them, or ends a line at
		// one, would read another line.
		{"NUL at line start", "a\r\n\x00b\r\n.\r\n", 0, "a\r\n", ErrNUL},
		{"NUL first", "\x00b\r\n.\r\n", 0, "", ErrNUL},
		{"NUL before CRLF", "ab\x00\r\n.\r\n", 0, "ab", ErrNUL},
		{"NULs before CRLF", "ab\x00\x00\r\n.\r\n", 0, "ab\x00", ErrNUL},
		{"NUL before LF", "ab\x00\n.\r\n", 0, "ab", ErrNUL},
		{"dot NUL text", "a\r\n.\x00b\r\n.\r\n", 0, "a\r\n", ErrNUL},
		{"too many NULs to tell", "a\r\n" + strings.Repeat("\x00", 9) + ".\r\n.\r\n", 0, "a\r\n", ErrNUL},

		// Every way to make some server see an end that we would not: a
		// lone dot between line ends that are not both CRLF.
		{"LF.LF", "a\n.\nMAIL FROM:<x>\r\n.\r\n", 0, "a", ErrSmuggling},
		{"CR.CR", "a\r.\rMAIL FROM:<x>\r\n.\r\n", 0, "a", ErrSmuggling},
		{"LF.CRLF", "a\n.\r\nMAIL FROM:<x>\r\n.\r\n", 0, "a", ErrSmuggling},
		{"CRLF.LF", "a\r\n.\nMAIL FROM:<x>\r\n.\r\n", 0, "a\r\n", ErrSmuggling},
		{"CR.CRLF", "a\r.\r\nMAIL FROM:<x>\r\n.\r\n", 0, "a", ErrSmuggling},
		{"CRLF.CR", "a\r\n.\rMAIL FROM:<x>\r\n.\r\n", 0, "a\r\n", ErrSmuggling},
		{"LF.CR", "a\n.\rMAIL FROM:<x>\r\n.\r\n", 0, "a", ErrSmuggling},
		{"CR.LF", "a\r.\nMAIL FROM:<x>\r\n.\r\n", 0, "a", ErrSmuggling},
		{"CRLF.CRCRLF", "a\r\n.\r\r\nMAIL FROM:<x>\r\n.\r\n", 0, "a\r\n", ErrSmuggling},
		{"first line .LF", ".\nMAIL FROM:<x>\r\n.\r\n", 0, "", ErrSmuggling},
		{"first line .CR", ".\rMAIL FROM:<x>\r\n.\r\n", 0, "", ErrSmuggling},
		{"bare LF at start", "\n.\r\n", 0, "", ErrSmuggling},
		{"bare CR at start", "\r.\r\n", 0, "", ErrSmuggling},
		{"CRLF NUL.CRLF", "a\r\n\x00.\r\nMAIL FROM:<x>\r\n.\r\n", 0, "a\r\n", ErrSmuggling},
		{"CRLF.NUL CRLF", "a\r\n.\x00\r\nMAIL FROM:<x>\r\n.\r\n", 0, "a\r\n", ErrSmuggling},
		{"CRLF NUL.NUL CRLF", "a\r\n\x00.\x00\r\nMAIL FROM:<x>\r\n.\r\n", 0, "a\r\n", ErrSmuggling},
		{"first line NUL.CRLF", "\x00.\r\nMAIL FROM:<x>\r\n.\r\n", 0, "", ErrSmuggling},
		{"LF NUL.LF", "a\n\x00.\nMAIL FROM:<x>\r\n.\r\n", 0, "a", ErrSmuggling},
		{"CR.NUL CR", "a\r.\x00\rMAIL FROM:<x>\r\n.\r\n", 0, "a", ErrSmuggling},

		// The size limit counts the message, not its terminator.
		{"exactly max", "abc\r\n.\r\n", 5, "abc\r\n.\r\n", io.EOF},
		{"empty message at max 1", ".\r\n", 1, ".\r\n", io.EOF},
		{"one over max cuts before CR", "abc\r\n.\r\n", 4, "abc", ErrTooLarge},
		{"two over max", "abc\r\n.\r\n", 3, "abc", ErrTooLarge},
		{"mid-line over max", "abcdef\r\n.\r\n", 2, "ab", ErrTooLarge},
		{"dot-stuffed line over max", "ab\r\n..\r\n.\r\n", 4, "ab\r\n", ErrTooLarge},
		{"end right at max", "ab\r\ncd\r\n.\r\n", 8, "ab\r\ncd\r\n.\r\n", io.EOF},
		{"bare LF after max", "ab\ncd\r\n.\r\n", 1, "a", ErrTooLarge},
		{"bare LF before max", "ab\ncd\r\n.\r\n", 10, "ab", ErrBareLF},

		// The client goes away.
		{"EOF mid-line", "abc", 0, "abc", io.ErrUnexpectedEOF},
		{"EOF after CR", "abc\r", 0, "abc", io.ErrUnexpectedEOF},
		{"EOF after line", "abc\r\n", 0, "abc\r\n", io.ErrUnexpectedEOF},
		{"EOF after dot", "abc\r\n.", 0, "abc\r\n", io.ErrUnexpectedEOF},
		{"EOF after dot CR", "abc\r\n.\r", 0, "abc\r\n", io.ErrUnexpectedEOF},
		{"EOF at once", "", 0, "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, src := range sources {
			for _, size := range sinkSizes {
				r := NewReader(src.wrap(strings.NewReader(tt.in + next)))
				if tt.err == io.ErrUnexpectedEOF {
					r = NewReader(src.wrap(strings.NewReader(tt.in)))
				}
				d := r.Data(tt.max)
				out, err := readData(d, size)
				if out != tt.out || err != tt.err {
					t.Errorf("%s/%s/%d: Data(%q) = %q, %v; want %q, %v", tt.name, src.name, size, tt.in, out, err, tt.out, tt.err)
					continue
				}
				if _, err2 := d.Read(make([]byte, 10)); err2 != err {
					t.Errorf("%s/%s/%d: error not sticky: %v then %v", tt.name, src.name, size, err, err2)
				}
				if err == io.EOF {
					// The reader must stand on the next command.
					if l, err := r.ReadLine(MaxCommandLine); l+"\r\n" != next || err != nil {
						t.Errorf("%s/%s/%d: after DATA, ReadLine = %q, %v; want %q", tt.name, src.name, size, l, err, next)
					}
				}
			}
		}
	}
}

func TestDataDrain(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		max      int64
		readErr  error
		maxDrain int64
		drainErr error
		next     string // the line after the message, if Drain succeeds
	}{
		{"too large", "aaaaaaaaaa\r\nbbbbbbbbb\r\n.\r\nQUIT\r\n", 5, ErrTooLarge, 1000, nil, "QUIT"},
		{"too large at CR", "abcd\r\n.\r\nQUIT\r\n", 4, ErrTooLarge, 1000, nil, "QUIT"},
		{"too large at line start", "ab\r\n..\r\n.\r\nQUIT\r\n", 4, ErrTooLarge, 1000, nil, "QUIT"},
		{"too large at dot line", "ab\r\n.x\r\n.\r\nQUIT\r\n", 4, ErrTooLarge, 1000, nil, "QUIT"},
		{"too large before a dot mid-line", "a.\r\nRSET\r\n.\r\nQUIT\r\n", 1, ErrTooLarge, 1000, nil, "QUIT"},
		{"too large within a dot-stuffed line", "..\r\nRSET\r\n.\r\nQUIT\r\n", 1, ErrTooLarge, 1000, nil, "QUIT"},
		{"too large, drain tolerates bare LF", "aaaaaaa\nb\r\n.\r\nQUIT\r\n", 3, ErrTooLarge, 1000, nil, "QUIT"},
		{"bare LF", "a\nb\r\n.\r\nQUIT\r\n", 0, ErrBareLF, 1000, nil, "QUIT"},
		{"bare CR", "a\rb\r\n.\r\nQUIT\r\n", 0, ErrBareCR, 1000, nil, "QUIT"},
		{"LF.LF is no end for Drain", "a\n.\nRSET\r\n.\r\nQUIT\r\n", 0, ErrSmuggling, 1000, nil, "QUIT"},
		{"CR.CR is no end for Drain", "a\r.\rRSET\r\n.\r\nQUIT\r\n", 0, ErrSmuggling, 1000, nil, "QUIT"},
		{"LF.CRLF is no end for Drain", "a\n.\r\nRSET\r\n.\r\nQUIT\r\n", 0, ErrSmuggling, 1000, nil, "QUIT"},
		{"CRLF.LF is no end for Drain", "a\r\n.\nRSET\r\n.\r\nQUIT\r\n", 0, ErrSmuggling, 1000, nil, "QUIT"},
		{"bare LF at start, then end", "\n\r\n.\r\nQUIT\r\n", 0, ErrBareLF, 1000, nil, "QUIT"},
		{"bare CR before end", "a\r\r\n.\r\nQUIT\r\n", 0, ErrBareCR, 1000, nil, "QUIT"},
		{"first line dot-LF, then LF.CRLF is no end", ".\n.\r\nRSET\r\n.\r\nQUIT\r\n", 0, ErrSmuggling, 1000, nil, "QUIT"},
		{"NUL before CRLF", "a\x00\r\n.\r\nQUIT\r\n", 0, ErrNUL, 1000, nil, "QUIT"},
		{"NUL.NUL is no end for Drain", "a\r\n\x00.\x00\r\nRSET\r\n.\r\nQUIT\r\n", 0, ErrSmuggling, 1000, nil, "QUIT"},
		{"drain limit", "a\n" + strings.Repeat("x", 10000) + "\r\n.\r\nQUIT\r\n", 0, ErrBareLF, 5000, ErrDrainLimit, ""},
		{"drain limit just enough", "a\nbc\r\n.\r\nQUIT\r\n", 0, ErrBareLF, 8, nil, "QUIT"},
		{"drain limit one short", "a\nbc\r\n.\r\nQUIT\r\n", 0, ErrBareLF, 7, ErrDrainLimit, ""},
		{"EOF while draining", "a\nbc\r\n", 0, ErrBareLF, 1000, io.ErrUnexpectedEOF, ""},
	}
	for _, tt := range tests {
		for _, src := range sources {
			r := NewReader(src.wrap(strings.NewReader(tt.in)))
			d := r.Data(tt.max)
			_, err := readData(d, 3)
			if err != tt.readErr {
				t.Errorf("%s/%s: Read error %v, want %v", tt.name, src.name, err, tt.readErr)
				continue
			}
			if err := d.Drain(tt.maxDrain); err != tt.drainErr {
				t.Errorf("%s/%s: Drain = %v, want %v", tt.name, src.name, err, tt.drainErr)
				continue
			}
			if tt.drainErr != nil {
				continue
			}
			if _, err2 := d.Read(make([]byte, 10)); err2 != err {
				t.Errorf("%s/%s: after Drain, Read = %v, want %v", tt.name, src.name, err2, err)
			}
			if tt.next == "" {
				continue
			}
			if l, err := r.ReadLine(MaxCommandLine); l != tt.next || err != nil {
				t.Errorf("%s/%s: after Drain, ReadLine = %q, %v; want %q", tt.name, src.name, l, err, tt.next)
			}
		}
	}
}

// Seq shows the smuggling sequence as it was sent, however it arrived.
func TestDataSmugglingSeq(t *testing.T) {
	for _, tt := range []struct{ in, seq string }{
		{"a\n.\nMAIL", "<LF>.<LF>"},
		{"a\r.\rMAIL", "<CR>.<CR>"},
		{"a\n.\r\nMAIL", "<LF>.<CR><LF>"},
		{"a\r\n.\nMAIL", "<CR><LF>.<LF>"},
		{"a\r\n.\r\r\nMAIL", "<CR><LF>.<CR>"},
		{"a\r\n\x00.\r\nMAIL", "<CR><LF><NUL>.<CR><LF>"},
		{"a\r\n.\x00\r\nMAIL", "<CR><LF>.<NUL><CR><LF>"},
		{".\nMAIL", "<CR><LF>.<LF>"},
	} {
		for _, src := range sources {
			d := NewReader(src.wrap(strings.NewReader(tt.in))).Data(0)
			if _, err := readData(d, 1); err != ErrSmuggling || d.Seq() != tt.seq {
				t.Errorf("%s: %q: %v, Seq %q; want ErrSmuggling, %q", src.name, tt.in, err, d.Seq(), tt.seq)
			}
		}
	}
	d := NewReader(strings.NewReader("a\nb\r\n.\r\n")).Data(0)
	if _, err := readData(d, 10); err != ErrBareLF || d.Seq() != "" {
		t.Errorf("bare LF: %v, Seq %q; want ErrBareLF and no Seq", err, d.Seq())
	}
}

// A caller that gives up on a message without an error (its backend went
// away) drains it and never reads it as complete.
func TestDataDrainWithoutError(t *testing.T) {
	for _, src := range sources {
		r := NewReader(src.wrap(strings.NewReader("line one\r\nline two\r\n.\r\nQUIT\r\n")))
		d := r.Data(0)
		buf := make([]byte, 4)
		if _, err := io.ReadFull(d, buf); err != nil {
			t.Fatalf("%s: %v", src.name, err)
		}
		if err := d.Drain(1000); err != nil {
			t.Fatalf("%s: Drain = %v", src.name, err)
		}
		if n, err := d.Read(buf); n != 0 || err == nil || err == io.EOF {
			t.Errorf("%s: Read after Drain = %d, %v; want an error other than EOF", src.name, n, err)
		}
		if l, err := r.ReadLine(MaxCommandLine); l != "QUIT" || err != nil {
			t.Errorf("%s: ReadLine = %q, %v", src.name, l, err)
		}
	}
}

// Drain after a complete message leaves the reader where it was.
func TestDataDrainAfterEnd(t *testing.T) {
	r := NewReader(strings.NewReader("a\r\n.\r\nQUIT\r\n"))
	d := r.Data(0)
	if out, err := readData(d, 100); err != io.EOF || out != "a\r\n.\r\n" {
		t.Fatalf("Read = %q, %v", out, err)
	}
	if err := d.Drain(0); err != nil {
		t.Fatalf("Drain = %v", err)
	}
	if l, err := r.ReadLine(MaxCommandLine); l != "QUIT" || err != nil {
		t.Errorf("ReadLine = %q, %v", l, err)
	}
}

// Two messages in a row on one connection, the second one pipelined.
func TestDataTwice(t *testing.T) {
	r := NewReader(iotest.HalfReader(strings.NewReader("one\r\n.\r\nDATA\r\ntwo\r\n.\r\n")))
	for i, want := range []string{"one\r\n.\r\n", "two\r\n.\r\n"} {
		if i > 0 {
			if l, err := r.ReadLine(MaxCommandLine); l != "DATA" || err != nil {
				t.Fatalf("ReadLine = %q, %v", l, err)
			}
		}
		if out, err := readData(r.Data(100), 2); out != want || err != io.EOF {
			t.Errorf("message %d: %q, %v; want %q", i, out, err, want)
		}
	}
	if _, err := r.ReadLine(MaxCommandLine); err != io.EOF {
		t.Errorf("at the end: %v, want EOF", err)
	}
}

// A read error from the connection (a deadline) is passed on, after the
// bytes before it.
func TestDataConnError(t *testing.T) {
	boom := errors.New("i/o timeout")
	r := NewReader(io.MultiReader(strings.NewReader("abc\r\n"), iotest.ErrReader(boom)))
	out, err := readData(r.Data(0), 100)
	if out != "abc\r\n" || err != boom {
		t.Errorf("got %q, %v; want %q, %v", out, err, "abc\r\n", boom)
	}
	if err := r.Data(0).Drain(100); err == nil {
		t.Errorf("Drain on a dead connection succeeded")
	}
}

// Memory stays bounded: a long message without line ends is yielded in
// pieces no larger than the reader's buffer.
func TestDataLongLine(t *testing.T) {
	in := strings.Repeat("x", 100000) + "\r\n.\r\n"
	d := NewReader(strings.NewReader(in)).Data(0)
	buf := make([]byte, 1<<20)
	var out bytes.Buffer
	for {
		n, err := d.Read(buf)
		if n > bufferSize {
			t.Fatalf("Read yielded %d bytes at once", n)
		}
		out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != in {
		t.Errorf("long line mangled")
	}
}
