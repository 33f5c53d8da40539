package smtp

import (
	"bufio"
	"bytes"
	"io"
	"maps"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// Seed corpora live in testdata/fuzz/FuzzXxx/.

func FuzzParseCommand(f *testing.F) {
	f.Fuzz(func(t *testing.T, line string) {
		c := ParseCommand(line)
		if strings.ContainsAny(c.Verb, " \t") {
			t.Fatalf("verb %q holds a blank", c.Verb)
		}
		if c.Verb != asciiUpper(c.Verb) {
			t.Fatalf("verb %q not upper-cased", c.Verb)
		}
		if c.Arg != strings.Trim(c.Arg, " \t") {
			t.Fatalf("arg %q not trimmed", c.Arg)
		}
		if c.Verb == "" && c.Arg != "" {
			t.Fatalf("arg %q without verb", c.Arg)
		}
		// Parsing what we parsed gives the same.
		again := c.Verb
		if c.Arg != "" {
			again += " " + c.Arg
		}
		if c2 := ParseCommand(again); c2 != c {
			t.Fatalf("ParseCommand(%q) = %+v, but ParseCommand(%q) = %+v", line, c, again, c2)
		}
	})
}

// FuzzParseMail covers ParseMail and ParseRcpt, and Normalize on what they
// return.
func FuzzParseMail(f *testing.F) {
	f.Fuzz(func(t *testing.T, arg string, rcpt bool) {
		parse, keyword := ParseMail, "FROM"
		if rcpt {
			parse, keyword = ParseRcpt, "TO"
		}
		addr, params, err := parse(arg)
		if err != nil {
			if addr != "" || params != nil {
				t.Fatalf("error %v with %q, %v", err, addr, params)
			}
			return
		}
		if HasControl(addr) {
			t.Fatalf("address %q holds a control character", addr)
		}
		if rcpt && addr == "" {
			t.Fatalf("empty recipient accepted from %q", arg)
		}
		for k, v := range params {
			if !isKeyword(k) || k != asciiUpper(k) || HasControl(v) {
				t.Fatalf("bad parameter %q=%q", k, v)
			}
		}
		// What we accept, written back in canonical form, parses the same.
		var b strings.Builder
		b.WriteString(keyword + ":<" + addr + ">")
		for k, v := range params {
			b.WriteString(" " + k)
			if v != "" {
				b.WriteString("=" + v)
			}
		}
		addr2, params2, err := parse(b.String())
		if err != nil || addr2 != addr || !maps.Equal(params, params2) {
			t.Fatalf("%q -> %q, %v; but %q -> %q, %v, %v", arg, addr, params, b.String(), addr2, params2, err)
		}
		if n, err := Normalize(addr); err == nil {
			checkNormalized(t, addr, n)
		}
	})
}

func FuzzNormalize(f *testing.F) {
	f.Fuzz(func(t *testing.T, addr string) {
		n, err := Normalize(addr)
		if err != nil {
			if n != "" {
				t.Fatalf("error %v with %q", err, n)
			}
			return
		}
		checkNormalized(t, addr, n)
	})
}

func checkNormalized(t *testing.T, addr, n string) {
	t.Helper()
	if !utf8.ValidString(n) || HasControl(n) || strings.ContainsAny(n, " \t") && !strings.HasPrefix(n, `"`) {
		t.Fatalf("Normalize(%q) = %q: bad characters", addr, n)
	}
	if n2, err := Normalize(n); n2 != n || err != nil {
		t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", addr, n, n, n2, err)
	}
	d := Domain(n)
	if d == "" && n != "postmaster" {
		t.Fatalf("Normalize(%q) = %q without a domain", addr, n)
	}
	if strings.HasSuffix(d, ".") || d != strings.ToLower(d) {
		t.Fatalf("Normalize(%q) = %q: domain not canonical", addr, n)
	}
	if strings.ToLower(n) != n {
		t.Fatalf("Normalize(%q) = %q: not lower case", addr, n)
	}
}

// refData is the DATA reader written as plainly as possible, over the whole
// input: it returns how many bytes of in Data must yield and the error it
// must stop with.
func refData(in []byte, max int64) (int, error) {
	var body int64
	bol := true
	for i := 0; ; {
		rest := in[i:]
		if bol && (bytes.HasPrefix(rest, []byte(".")) || bytes.HasPrefix(rest, []byte{0})) {
			switch {
			case bytes.HasPrefix(rest, []byte(".\r\n")):
				return i + 3, io.EOF
			case bytes.HasPrefix([]byte(".\r\n"), rest):
				return i, io.ErrUnexpectedEOF // cannot tell yet whether it is the end
			}
			switch refLax(rest) {
			case laxYes:
				return i, ErrSmuggling
			case laxUnknown:
				return i, io.ErrUnexpectedEOF
			}
			if rest[0] == 0 || rest[1] == 0 {
				return i, ErrNUL
			}
		}
		switch {
		case len(rest) == 0:
			return i, io.ErrUnexpectedEOF
		case rest[0] == '\n' || rest[0] == '\r' && len(rest) > 1 && rest[1] != '\n':
			switch refLax(rest[1:]) {
			case laxYes:
				return i, ErrSmuggling
			case laxUnknown:
				return i, io.ErrUnexpectedEOF
			}
			if rest[0] == '\n' {
				return i, ErrBareLF
			}
			return i, ErrBareCR
		case (rest[0] == '\r' || rest[0] == 0) && len(rest) == 1:
			return i, io.ErrUnexpectedEOF
		case rest[0] == 0 && (rest[1] == '\r' || rest[1] == '\n'):
			return i, ErrNUL
		case rest[0] == '\r':
			if max > 0 && body+2 > max {
				return i, ErrTooLarge
			}
			body, i, bol = body+2, i+2, true
		default:
			if max > 0 && body+1 > max {
				return i, ErrTooLarge
			}
			body, i, bol = body+1, i+1, false
		}
	}
}

const (
	laxNo = iota
	laxYes
	laxUnknown // the input ends before it can tell
)

// laxRE is a lone dot between at most 8 NULs on each side, then a line end
// of any kind; a CR there must be followed by one more byte (it is shown
// with its LF, if any).
var laxRE = regexp.MustCompile(`(?s)^\x00{0,8}\.\x00{0,8}(\n|\r.)`)

// laxPrefixRE matches what more input could still turn into a laxRE match.
var laxPrefixRE = regexp.MustCompile(`^\x00{0,8}(\.\x00{0,8}\r?)?$`)

// refLax says whether b starts with a lax end of data.
func refLax(b []byte) int {
	switch {
	case laxRE.Match(b):
		return laxYes
	case laxPrefixRE.Match(b):
		return laxUnknown
	}
	return laxNo
}

func FuzzData(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte, max uint16, bufSize uint8) {
		wantN, wantErr := refData(in, int64(max))
		for _, src := range sources {
			r := NewReader(src.wrap(bytes.NewReader(in)))
			d := r.Data(int64(max))
			out, err := readData(d, int(bufSize)%64+1)
			if !bytes.HasPrefix(in, []byte(out)) {
				t.Fatalf("%s: output %q is not a prefix of the input", src.name, out)
			}
			if err != wantErr || len(out) != wantN {
				t.Fatalf("%s: Data(%q, %d) = %q, %v; want %q, %v", src.name, in, max, out, err, in[:wantN], wantErr)
			}
			// No line end anywhere but CRLF.
			if strings.Count(out, "\n") != strings.Count(out, "\r\n") || strings.Count(out, "\r") != strings.Count(out, "\r\n") {
				t.Fatalf("%s: output %q holds a bare CR or LF", src.name, out)
			}
			if err == io.EOF {
				if out != ".\r\n" && !strings.HasSuffix(out, "\r\n.\r\n") {
					t.Fatalf("%s: output %q ends without the terminator", src.name, out)
				}
				if i := strings.Index(out, "\r\n.\r\n"); i >= 0 && i != len(out)-5 || strings.HasPrefix(out, ".\r\n") && out != ".\r\n" {
					t.Fatalf("%s: output %q goes on past an end", src.name, out)
				}
				// The reader stands right after the message.
				rest, _ := io.ReadAll(r.br)
				if !bytes.Equal(rest, in[len(out):]) {
					t.Fatalf("%s: after DATA, %q left; want %q", src.name, rest, in[len(out):])
				}
			}
			if err == ErrBareLF || err == ErrBareCR || err == ErrNUL || err == ErrSmuggling || err == ErrTooLarge {
				checkDrain(t, src.name, r, d, in, firstEnd(in, len(out)))
			}

			// A caller that gives up after a few bytes and drains.
			r = NewReader(src.wrap(bytes.NewReader(in)))
			d = r.Data(int64(max))
			k := int(bufSize)
			if wantN < k {
				k = wantN
			}
			if n, err := io.ReadFull(d, make([]byte, k)); n != k {
				t.Fatalf("%s: read %d of the first %d bytes: %v", src.name, n, k, err)
			}
			end := firstEnd(in, k)
			if wantErr == io.EOF {
				end = wantN
			}
			checkDrain(t, src.name+"/abandoned", r, d, in, end)
		}
	})
}

// firstEnd returns where the first end of DATA at or after from ends: the
// end of the first ".\r\n" that starts a line, or -1.
func firstEnd(in []byte, from int) int {
	for p := from; p+3 <= len(in); p++ {
		if bytes.HasPrefix(in[p:], []byte(".\r\n")) && (p == 0 || p >= 2 && bytes.HasPrefix(in[p-2:], []byte("\r\n"))) {
			return p + 3
		}
	}
	return -1
}

// checkDrain drains d and checks that the reader then stands at end (-1:
// Drain must find no end).
func checkDrain(t *testing.T, name string, r *Reader, d *DataReader, in []byte, end int) {
	t.Helper()
	err := d.Drain(1 << 20)
	if end < 0 {
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("%s: Drain(%q) = %v, want unexpected EOF", name, in, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: Drain(%q) = %v, want it to stop at %d", name, in, err, end)
	}
	if rest, _ := io.ReadAll(r.br); !bytes.Equal(rest, in[end:]) {
		t.Fatalf("%s: after Drain(%q), %q left; want %q", name, in, rest, in[end:])
	}
}

func FuzzReadReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte, maxLines uint8) {
		max := int(maxLines)%8 + 1
		r, err := ReadReply(bufio.NewReader(bytes.NewReader(in)), max)
		if err != nil {
			if r.Code != 0 || r.Lines != nil {
				t.Fatalf("error %v with %+v", err, r)
			}
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 || len(r.Lines) > max {
			t.Fatalf("ReadReply(%q) = %+v", in, r)
		}
		for _, l := range r.Lines {
			if strings.Contains(l, "\n") || len(l) > MaxReplyLine {
				t.Fatalf("ReadReply(%q): bad line %q", in, l)
			}
		}
		// What we read, written back, reads the same.
		r2, err := ReadReply(bufio.NewReader(strings.NewReader(r.String())), max)
		if err != nil || r2.Code != r.Code || strings.Join(r2.Lines, "\n") != strings.Join(r.Lines, "\n") || len(r2.Lines) != len(r.Lines) {
			t.Fatalf("ReadReply(%q) = %+v; written back %q reads %+v, %v", in, r, r.String(), r2, err)
		}
	})
}
