package config

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"moat/internal/prefix"
)

// The value types below read themselves from the text of the file
// (encoding.TextUnmarshaler, which go-toml honours). Their errors quote the
// value and say what to write; decode puts the key in front.

// Duration is a length of time, written as a quoted string with a unit:
// "90s", "5m", "24h", "36d". It is never negative.
type Duration struct{ time.Duration }

// UnmarshalText reads a duration as parseDuration does.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q: not a duration (write e.g. \"90s\", \"5m\", \"24h\" or \"36d\")", b)
	}
	if v < 0 {
		return fmt.Errorf("%q: must not be negative", b)
	}
	d.Duration = v
	return nil
}

// expects is what the file must hold where a Duration goes: a bare number
// of seconds is the classic way to get a policy 60 times off.
func (Duration) expects() string {
	return `a string is expected (durations are quoted strings like "5m")`
}

// parseDuration is time.ParseDuration plus a "d" (day) unit, because mail
// administrators think of white_ttl in days.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") && !strings.ContainsAny(s[:len(s)-1], "hmsuµn") {
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64)
		if err != nil {
			return 0, err
		}
		if math.IsNaN(n) || math.IsInf(n, 0) || math.Abs(n) > float64(math.MaxInt64)/float64(24*time.Hour) {
			return 0, fmt.Errorf("%s: out of range", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	return time.ParseDuration(s)
}

// Size is a number of bytes: a TOML integer (52428800), or a quoted number
// with a unit, "50MiB" or "50MB" (KiB, MiB, GiB count 1024s; kB, MB, GB
// count 1000s).
type Size int64

var sizeUnits = []struct {
	suffix string
	n      int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"B", 1},
}

// UnmarshalText reads a size written as a string; go-toml stores a TOML
// integer into a Size by itself.
func (s *Size) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	num, unit := text, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(text, u.suffix) {
			num, unit = strings.TrimSpace(strings.TrimSuffix(text, u.suffix)), u.n
			break
		}
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(num, "_", ""), 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/unit {
		return fmt.Errorf("%q: not a size (write bytes as an integer, e.g. 10485760, or a quoted size like \"10MiB\")", b)
	}
	*s = Size(n * unit)
	return nil
}

func (Size) expects() string { return `an integer or a string like "10MiB" is expected` }

// Prefix is an address or a CIDR as written in the file, read by
// prefix.Parse: a single address is that host, a CIDR is masked.
type Prefix struct{ netip.Prefix }

// UnmarshalText reads one address or CIDR.
func (p *Prefix) UnmarshalText(b []byte) error {
	v, err := prefix.Parse(string(b))
	if err != nil {
		return fmt.Errorf("%q: not an address or CIDR (write e.g. \"192.0.2.0/24\", \"2001:db8::/32\" or \"192.0.2.7\")", b)
	}
	p.Prefix = v
	return nil
}

// Prefixes is a list of addresses and networks (whitelist, blacklist,
// trusted proxies).
type Prefixes []Prefix

// Nets returns the list as the engine and the listeners take it.
func (l Prefixes) Nets() []netip.Prefix {
	if l == nil {
		return nil
	}
	out := make([]netip.Prefix, len(l))
	for i, p := range l {
		out[i] = p.Prefix
	}
	return out
}
