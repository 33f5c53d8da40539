package config

import (
	"strings"
	"testing"
)

// FuzzParse checks that no configuration text makes Parse panic, that a
// text it accepts gives a config that passes validation, and that every
// error it returns is one of config's own.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte(""))
	f.Add([]byte("[greylist]\nmin_retry = \"5x\"\n"))
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
	})
}
