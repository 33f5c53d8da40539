package reputation

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeMMDB writes an MMDB file of the given type mapping each network to
// its record, and returns its path. The name says nothing of the format:
// LoadASN must tell by the content.
func writeMMDB(t testing.TB, dbType string, recs map[string]mmdbtype.Map) string {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range recs {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "asn.dat")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func maxmindASN(n uint32, org string) mmdbtype.Map {
	return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(n), "autonomous_system_organization": mmdbtype.String(org)}
}

func TestLoadASNMMDB(t *testing.T) {
	// GeoLite2-ASN and DB-IP's ASN databases name the fields alike.
	path := writeMMDB(t, "GeoLite2-ASN", map[string]mmdbtype.Map{
		"192.0.2.0/24":    maxmindASN(64500, "EXAMPLE-NET"),
		"198.51.100.0/25": maxmindASN(64501, "OTHER-NET"),
		"2001:db8::/32":   maxmindASN(64502, "EXAMPLE-V6"),
	})
	tab, err := LoadASN(path)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 3 {
		t.Errorf("Len = %d, want the 3 networks", tab.Len())
	}
	for addr, want := range map[string]ASN{
		"192.0.2.77":       {Number: 64500, Name: "EXAMPLE-NET"},
		"::ffff:192.0.2.1": {Number: 64500, Name: "EXAMPLE-NET"},
		"198.51.100.127":   {Number: 64501, Name: "OTHER-NET"},
		"2001:db8:1::5":    {Number: 64502, Name: "EXAMPLE-V6"},
		"198.51.100.128":   {}, // outside the /25
		"203.0.113.1":      {},
		"2001:db9::1":      {},
	} {
		got, ok := tab.Lookup(netip.MustParseAddr(addr))
		if ok != (want.Number != 0) || got != want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v", addr, got, ok, want)
		}
	}
	if a, _ := tab.Lookup(netip.MustParseAddr("192.0.2.1")); a.String() != "AS64500" {
		t.Errorf("String() = %q", a.String())
	}
}

// IPinfo-style databases call the AS "asn", as "AS64500" or a number.
func TestLoadASNMMDBOtherNames(t *testing.T) {
	path := writeMMDB(t, "ipinfo asn.mmdb", map[string]mmdbtype.Map{
		"192.0.2.0/24":    {"asn": mmdbtype.String("AS64510"), "name": mmdbtype.String("INFO-NET"), "domain": mmdbtype.String("example.net")},
		"198.51.100.0/24": {"asn": mmdbtype.Uint32(64511), "name": mmdbtype.String("NUMBERED")},
	})
	tab, err := LoadASN(path)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]ASN{
		"192.0.2.1":    {Number: 64510, Name: "INFO-NET"},
		"198.51.100.1": {Number: 64511, Name: "NUMBERED"},
	} {
		if got, ok := tab.Lookup(netip.MustParseAddr(addr)); !ok || got != want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v", addr, got, ok, want)
		}
	}
}

func TestLoadASNMMDBRefused(t *testing.T) {
	city := writeMMDB(t, "GeoLite2-City", map[string]mmdbtype.Map{
		"192.0.2.0/24": {"city": mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Example")}}},
	})
	if _, err := LoadASN(city); err == nil || !strings.Contains(err.Error(), "no AS number") {
		t.Errorf("a City database as asn_db: %v, want an error saying it has no AS numbers", err)
	}
	good := writeMMDB(t, "GeoLite2-ASN", map[string]mmdbtype.Map{"192.0.2.0/24": maxmindASN(64500, "X")})
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// The metadata kept, the search tree damaged: a bad download.
	bad := append([]byte{}, b...)
	for i := range min(64, len(bad)/2) {
		bad[i] ^= 0xff
	}
	path := filepath.Join(t.TempDir(), "damaged.mmdb")
	os.WriteFile(path, bad, 0o600)
	if _, err := LoadASN(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a damaged MMDB: %v, want an error naming the file", err)
	}
}

// The TSV format is still read, through the same LoadASN.
func TestLoadASNTSV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ip2asn-combined.tsv")
	os.WriteFile(path, []byte("192.0.2.0\t192.0.2.255\t64500\tZZ\tEXAMPLE-NET\n"), 0o600)
	tab, err := LoadASN(path)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := tab.Lookup(netip.MustParseAddr("192.0.2.9")); !ok || a.Number != 64500 || a.Country != "ZZ" {
		t.Errorf("Lookup = %+v, %v", a, ok)
	}
}

func BenchmarkASNLookupMMDB(b *testing.B) {
	recs := map[string]mmdbtype.Map{}
	for i := range 256 {
		recs[netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16).String()] = maxmindASN(uint32(64500+i), "NET")
	}
	tab, err := LoadASN(writeMMDB(b, "GeoLite2-ASN", recs))
	if err != nil {
		b.Fatal(err)
	}
	addr := netip.MustParseAddr("10.77.1.2")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tab.Lookup(addr); !ok {
			b.Fatal("not found")
		}
	}
}
