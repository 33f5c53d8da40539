// Package dnsbl reads and matches the entries of a DNS list setting, written
// as Postfix's postscreen_dnsbl_sites writes them ("zone=filter*weight").
//
// It holds the syntax only, and imports only the standard library: config
// checks the entries at load with it, and reputation, which does the DNS
// lookups and adds up the weights, matches the replies with it.
package dnsbl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Site is one entry of the DNSBL list, written as Postfix postscreen's
// postscreen_dnsbl_sites writes it: "zone=filter*weight". The filter and
// the weight are optional: "zone" alone counts 1 for any reply. The filter
// is a pattern for the A record of the reply, one field per octet, where
// a field is a number or a bracket of numbers and ranges separated by ';'
// ("127.0.0.[2..11]", "127.0.[0..255].[1;3;10..12]"). A negative weight
// makes the zone an allow list (a DNSWL).
type Site struct {
	Zone   string // without the trailing dot
	Filter string // as written, "" for any reply
	Weight int

	octets [4][]octetRange // nil: any reply
}

type octetRange struct{ lo, hi uint8 }

// ParseSite parses one "zone=filter*weight" entry. Its errors quote the
// entry and say what to write instead.
func ParseSite(s string) (Site, error) {
	spec := strings.TrimSpace(s)
	site := Site{Weight: 1}
	if i := strings.LastIndexByte(spec, '*'); i >= 0 {
		w, err := strconv.Atoi(spec[i+1:])
		if err != nil || w == 0 {
			return Site{}, fmt.Errorf("%q: weight %q: want a non-zero integer, e.g. \"*3\" or \"*-5\"", s, spec[i+1:])
		}
		site.Weight, spec = w, spec[:i]
	}
	zone, filter, hasFilter := strings.Cut(spec, "=")
	zone = strings.TrimSuffix(strings.ToLower(zone), ".")
	if !validZone(zone) {
		return Site{}, fmt.Errorf("%q: zone %q: want a DNS zone like \"zen.example.net\"", s, zone)
	}
	site.Zone = zone
	if hasFilter {
		fields := splitFilter(filter)
		if len(fields) != 4 {
			return Site{}, fmt.Errorf("%q: filter %q: want four fields like \"127.0.0.[2..11]\"", s, filter)
		}
		site.Filter = filter
		var octets [4][]octetRange
		for i, f := range fields {
			rs, err := parseOctet(f)
			if err != nil {
				return Site{}, fmt.Errorf("%q: filter %q: field %d: %v", s, filter, i+1, err)
			}
			octets[i] = rs
		}
		site.octets = octets
	}
	return site, nil
}

// validZone accepts host names of two labels or more: letters, digits,
// '-' and '_', no empty label.
func validZone(z string) bool {
	labels := strings.Split(z, ".")
	if len(labels) < 2 || len(z) > 253 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// splitFilter splits a filter at the dots between octets, not at the
// ".." of a range inside brackets.
func splitFilter(f string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '.':
			if depth == 0 {
				out = append(out, f[start:i])
				start = i + 1
			}
		}
	}
	return append(out, f[start:])
}

func parseOctet(f string) ([]octetRange, error) {
	if !strings.HasPrefix(f, "[") {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil {
			return nil, fmt.Errorf("%q: want 0..255 or [a..b;c]", f)
		}
		return []octetRange{{uint8(n), uint8(n)}}, nil
	}
	if !strings.HasSuffix(f, "]") {
		return nil, fmt.Errorf("%q: missing ']'", f)
	}
	var out []octetRange
	for _, alt := range strings.Split(f[1:len(f)-1], ";") {
		lo, hi, isRange := strings.Cut(alt, "..")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.ParseUint(lo, 10, 8)
		b, err2 := strconv.ParseUint(hi, 10, 8)
		if err1 != nil || err2 != nil || a > b {
			return nil, fmt.Errorf("%q: %q is not a number or range of 0..255", f, alt)
		}
		out = append(out, octetRange{uint8(a), uint8(b)})
	}
	return out, nil
}

// Match reports whether a reply address passes the site's filter.
func (s Site) Match(reply netip.Addr) bool {
	if s.octets[0] == nil {
		return true
	}
	if !reply.Is4() {
		return false
	}
	b := reply.As4()
	for i, rs := range s.octets {
		ok := false
		for _, r := range rs {
			if b[i] >= r.lo && b[i] <= r.hi {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (s Site) String() string {
	out := s.Zone
	if s.Filter != "" {
		out += "=" + s.Filter
	}
	if s.Weight != 1 {
		out += "*" + strconv.Itoa(s.Weight)
	}
	return out
}

// UnmarshalText reads one entry, so that a list of them loads straight from
// the config file.
func (s *Site) UnmarshalText(b []byte) error {
	site, err := ParseSite(string(b))
	if err != nil {
		return err
	}
	*s = site
	return nil
}
