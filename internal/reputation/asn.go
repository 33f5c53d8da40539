package reputation

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
)

// ASN is one autonomous system as the IP-to-ASN table names it.
type ASN struct {
	Number  uint32
	Country string
	Name    string
}

func (a ASN) String() string { return "AS" + strconv.FormatUint(uint64(a.Number), 10) }

// ASNTable maps addresses to autonomous systems. It reads the public
// ip2asn TSV format (ip2asn-v4.tsv, ip2asn-v6.tsv, ip2asn-combined.tsv):
//
//	range_start	range_end	AS_number	country_code	AS_description
//
// Rows with AS number 0 ("Not routed") are skipped. It also reads ASN
// databases in the MaxMind DB format (asn_mmdb.go).
type ASNTable struct {
	ranges []asnRange // sorted by start, not overlapping
	mmdb   *mmdbASN   // instead of ranges, for an MMDB file
}

type asnRange struct {
	start, end netip.Addr
	asn        ASN
}

// LoadASN reads an ip2asn TSV file or an MMDB file, whichever the file
// holds.
func LoadASN(path string) (*ASNTable, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t *ASNTable
	if isMMDB(b) {
		var m *mmdbASN
		if m, err = parseMMDB(b); err == nil {
			t = &ASNTable{mmdb: m}
		}
	} else {
		t, err = ParseASN(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseASN reads ip2asn TSV text.
func ParseASN(r io.Reader) (*ASNTable, error) {
	t := &ASNTable{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) < 3 {
			return nil, fmt.Errorf("line %d: want range_start, range_end, AS_number, country, description separated by tabs", line)
		}
		start, err1 := netip.ParseAddr(f[0])
		end, err2 := netip.ParseAddr(f[1])
		n, err3 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil || start.Is4() != end.Is4() || end.Less(start) {
			return nil, fmt.Errorf("line %d: %q: not a valid range and AS number", line, text)
		}
		if n == 0 {
			continue
		}
		a := ASN{Number: uint32(n)}
		if len(f) > 3 {
			a.Country = f[3]
		}
		if len(f) > 4 {
			a.Name = f[4]
		}
		t.ranges = append(t.ranges, asnRange{start.Unmap(), end.Unmap(), a})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(t.ranges, func(i, j int) bool { return t.ranges[i].start.Less(t.ranges[j].start) })
	return t, nil
}

// Len is the number of routed ranges (networks, in an MMDB file).
func (t *ASNTable) Len() int {
	switch {
	case t == nil:
		return 0
	case t.mmdb != nil:
		return t.mmdb.networks
	}
	return len(t.ranges)
}

// Lookup returns the AS that announces addr.
func (t *ASNTable) Lookup(addr netip.Addr) (ASN, bool) {
	if t == nil {
		return ASN{}, false
	}
	addr = addr.Unmap()
	if t.mmdb != nil {
		return t.mmdb.lookup(addr)
	}
	// The last range that starts at or before addr is the only one that
	// can hold it.
	i := sort.Search(len(t.ranges), func(i int) bool { return addr.Less(t.ranges[i].start) }) - 1
	if i < 0 {
		return ASN{}, false
	}
	r := t.ranges[i]
	if r.start.Is4() != addr.Is4() || r.end.Less(addr) {
		return ASN{}, false
	}
	return r.asn, true
}
