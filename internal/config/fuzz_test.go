package config

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParse checks that no configuration text makes Parse panic, that a
// text it accepts gives a config that passes validation, and that every
// error it returns is one of config's own. More seeds are in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := Parse(text)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("Parse(%q): error %q does not start with \"config: \"", text, err)
			}
			return
		}
		if c == nil {
			t.Fatalf("Parse(%q) = nil, nil", text)
		}
		if err := c.validate(); err != nil {
			t.Fatalf("Parse(%q) accepted a config that does not validate: %v", text, err)
		}
		// A list entry that is not a valid prefix matches nothing: an
		// operator's whitelist entry would be silently ignored.
		for _, l := range [][]netip.Prefix{c.Whitelist.Nets(), c.Blacklist.Nets(), c.TrustedProxies.Nets(), c.Bait.TrustedProxies.Nets()} {
			for _, p := range l {
				if !p.IsValid() {
					t.Fatalf("Parse(%q) accepted an invalid prefix %v", text, p)
				}
			}
		}
	})
}
