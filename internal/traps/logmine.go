package traps

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
)

// Observation is one rejection found in a mail log: client asked for Addr
// and the server said there is no such user.
type Observation struct {
	Client netip.Addr `json:"client"`
	Addr   string     `json:"addr"`
}

// LineMatcher finds "User unknown" rejections in log lines with a regular
// expression that has two named groups: "client" (the client's IP address)
// and "addr" (the recipient).
type LineMatcher struct {
	re           *regexp.Regexp
	client, addr int
}

// NewLineMatcher compiles pattern and checks its groups.
func NewLineMatcher(pattern string) (*LineMatcher, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("traps: reject pattern: %v", err)
	}
	m := &LineMatcher{re: re, client: re.SubexpIndex("client"), addr: re.SubexpIndex("addr")}
	if m.client < 0 || m.addr < 0 {
		return nil, fmt.Errorf("traps: reject pattern: needs the named groups (?P<client>…) and (?P<addr>…)")
	}
	return m, nil
}

// Match returns the rejection in line, if there is one.
func (m *LineMatcher) Match(line string) (Observation, bool) {
	sm := m.re.FindStringSubmatch(line)
	if sm == nil {
		return Observation{}, false
	}
	ip, err := netip.ParseAddr(strings.TrimPrefix(sm[m.client], "IPv6:"))
	if err != nil {
		return Observation{}, false
	}
	if sm[m.addr] == "" {
		return Observation{}, false
	}
	return Observation{Client: ip.Unmap().WithZone(""), Addr: sm[m.addr]}, true
}

// maxLogLine bounds one log line; longer ones are skipped, not fatal.
const maxLogLine = 64 << 10

// MineFile reads a whole log file once (gzip-compressed when its name ends
// in .gz) and calls fn for every rejection in it. It returns the number of
// lines read.
func MineFile(path string, m *LineMatcher, fn func(Observation)) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	n, err := mineReader(r, m, fn)
	if err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

func mineReader(r io.Reader, m *LineMatcher, fn func(Observation)) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Skip the rest of an overlong line.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			n++
			if err == io.EOF {
				return n, nil
			}
			if err != nil {
				return n, err
			}
			continue
		}
		if len(line) > 0 {
			n++
			if o, ok := m.Match(string(line)); ok {
				fn(o)
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
