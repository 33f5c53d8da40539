package dnsbl

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseSite(t *testing.T) {
	for _, tc := range []struct {
		in     string
		zone   string
		weight int
		match  []string
		miss   []string
		errHas string
	}{
		{in: "zen.example.net", zone: "zen.example.net", weight: 1, match: []string{"127.0.0.2", "127.255.1.1"}},
		{in: "zen.example.net*3", zone: "zen.example.net", weight: 3, match: []string{"127.0.0.10"}},
		{in: "zen.example.net=127.0.0.[2..11]*3", zone: "zen.example.net", weight: 3,
			match: []string{"127.0.0.2", "127.0.0.11"}, miss: []string{"127.0.0.1", "127.0.0.12", "127.0.1.2"}},
		{in: "list.dnswl.example=127.0.[0..255].[1..3]*-5", zone: "list.dnswl.example", weight: -5,
			match: []string{"127.0.15.1", "127.0.255.3"}, miss: []string{"127.0.15.0", "127.0.15.4"}},
		{in: "bl.example=127.0.0.[2;4;6..7]", zone: "bl.example", weight: 1,
			match: []string{"127.0.0.2", "127.0.0.4", "127.0.0.7"}, miss: []string{"127.0.0.3", "127.0.0.5", "127.0.0.8"}},
		{in: "BL.Example.=127.0.0.2", zone: "bl.example", weight: 1, match: []string{"127.0.0.2"}, miss: []string{"127.0.0.3"}},
		{in: "bl.example*x", errHas: "weight"},
		{in: "bl.example*0", errHas: "weight"},
		{in: "bl.example=127.0.0", errHas: "four fields"},
		{in: "bl.example=127.0.0.[3..2]", errHas: "range"},
		{in: "bl.example=127.0.0.[2..300]", errHas: "range"},
		{in: "bl.example=127.0.0.[2", errHas: "']'"},
		{in: "=127.0.0.2", errHas: "zone"},
		{in: "nodots=127.0.0.2", errHas: "zone"},
	} {
		s, err := ParseSite(tc.in)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("ParseSite(%q) = %v, want an error about %s", tc.in, err, tc.errHas)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSite(%q): %v", tc.in, err)
			continue
		}
		if s.Zone != tc.zone || s.Weight != tc.weight {
			t.Errorf("ParseSite(%q) = zone %q weight %d, want %q %d", tc.in, s.Zone, s.Weight, tc.zone, tc.weight)
		}
		for _, m := range tc.match {
			if !s.Match(netip.MustParseAddr(m)) {
				t.Errorf("%q does not match %s", tc.in, m)
			}
		}
		for _, m := range tc.miss {
			if s.Match(netip.MustParseAddr(m)) {
				t.Errorf("%q matches %s", tc.in, m)
			}
		}
	}
}

// FuzzParseSite: any text either fails to parse or gives a site that
// prints back to something that parses to the same site.
func FuzzParseSite(f *testing.F) {
	for _, s := range []string{"zen.example.net=127.0.0.[2..11]*3", "wl.example=127.0.[0..255].[1;3]*-5", "bl.example", "a.b=1.2.3.[4", "x*y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		site, err := ParseSite(s)
		if err != nil {
			return
		}
		again, err := ParseSite(site.String())
		if err != nil || again.String() != site.String() {
			t.Fatalf("%q -> %q -> %q, %v", s, site, again, err)
		}
		site.Match(netip.MustParseAddr("127.0.0.2"))
	})
}
