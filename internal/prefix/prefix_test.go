package prefix

import (
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"192.0.2.7", "192.0.2.7/32"},
		{"192.0.2.0/24", "192.0.2.0/24"},
		{"192.0.2.7/24", "192.0.2.0/24"}, // masked
		{" 192.0.2.7 ", "192.0.2.7/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/32", "2001:db8::/32"},
		{"2001:db8:aaaa:bbbb:cccc::1/64", "2001:db8:aaaa:bbbb::/64"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},       // unmapped
		{"::ffff:192.0.2.7/120", "192.0.2.0/24"},   // unmapped and masked
		{"::ffff:192.0.2.7/128", "192.0.2.7/32"},   // unmapped
		{"::ffff:198.51.100.0/104", "198.0.0.0/8"}, // unmapped and masked
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || got != netip.MustParsePrefix(tt.want) {
			t.Errorf("Parse(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "192.0.2", "192.0.2.0/33", "2001:db8::/129", "example.org", "192.0.2.0/", "/24"} {
		if got, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, got)
		}
	}
}

// TestParseMappedShortPrefixIsError: an IPv4-mapped CIDR shorter than /96
// has no IPv4 meaning. Parse once returned the zero (invalid) Prefix with a
// nil error, so `whitelist = ["::ffff:192.0.2.0/64"]` loaded and silently
// matched nothing.
func TestParseMappedShortPrefixIsError(t *testing.T) {
	for _, in := range []string{"::ffff:192.0.2.0/64", "::ffff:192.0.2.0/95"} {
		got, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) = %v (valid: %v), want an error", in, got, got.IsValid())
		}
	}
}

func TestNorm(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7/24", "192.0.2.0/24"},
		{"::ffff:192.0.2.7/128", "192.0.2.7/32"},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24"},
		{"2001:db8::1/64", "2001:db8::/64"},
		{"::/0", "::/0"},
	} {
		if got := Norm(netip.MustParsePrefix(tc.in)); got != netip.MustParsePrefix(tc.want) {
			t.Errorf("Norm(%s) = %v, want %s", tc.in, got, tc.want)
		}
	}
	if got := Norm(netip.Prefix{}); got.IsValid() {
		t.Errorf("Norm(invalid) = %v, want it invalid still", got)
	}
	zoned := netip.PrefixFrom(netip.MustParseAddr("fe80::1%eth0"), 64)
	if got := Norm(zoned); got != netip.MustParsePrefix("fe80::/64") {
		t.Errorf("Norm(%v) = %v, want the zone dropped", zoned, got)
	}
}

func TestHost(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":        "192.0.2.1/32",
		"::ffff:192.0.2.1": "192.0.2.1/32",
		"2001:db8::1":      "2001:db8::1/128",
	} {
		if got := Host(netip.MustParseAddr(in)); got != netip.MustParsePrefix(want) {
			t.Errorf("Host(%s) = %v, want %s", in, got, want)
		}
	}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		in     string
		v4, v6 int
		want   string
	}{
		{"192.0.2.77", 24, 64, "192.0.2.0/24"},
		{"::ffff:192.0.2.77", 24, 48, "192.0.2.0/24"},
		{"192.0.2.77", 32, 64, "192.0.2.77/32"},
		{"2001:db8:1:2::5", 24, 48, "2001:db8:1::/48"},
		{"2001:db8:1:2::5", 24, 64, "2001:db8:1:2::/64"},
	} {
		if got := Fold(netip.MustParseAddr(tc.in), tc.v4, tc.v6); got != netip.MustParsePrefix(tc.want) {
			t.Errorf("Fold(%s, %d, %d) = %v, want %s", tc.in, tc.v4, tc.v6, got, tc.want)
		}
	}
}
