package smtp

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// message returns a DATA section of about size bytes in 78-byte lines, some
// of them dot-stuffed, followed by a QUIT.
func message(size int) []byte {
	var b bytes.Buffer
	line := strings.Repeat("abcdefghij", 7) + "klmnopqr\r\n"
	for i := 0; b.Len() < size; i++ {
		if i%50 == 0 {
			b.WriteString(".")
		}
		b.WriteString(line)
	}
	b.WriteString(".\r\nQUIT\r\n")
	return b.Bytes()
}

func BenchmarkData(b *testing.B) {
	in := message(1 << 20)
	src := bytes.NewReader(in)
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(in)
		d := NewReader(src).Data(0)
		for {
			_, err := d.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkDataDrain(b *testing.B) {
	in := message(1 << 20)
	src := bytes.NewReader(in)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		src.Reset(in)
		d := NewReader(src).Data(0)
		if err := d.Drain(int64(len(in))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadLine(b *testing.B) {
	cmds := "MAIL FROM:<someone@example.org> SIZE=12345 BODY=8BITMIME\r\nRCPT TO:<user@example.net>\r\n"
	in := []byte(strings.Repeat(cmds, 1000))
	src := bytes.NewReader(in)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(in)
		r := NewReader(src)
		for {
			_, err := r.ReadLine(MaxCommandLine)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
