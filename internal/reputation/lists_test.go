package reputation

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNetwork(t *testing.T) {
	if got := Network(netip.MustParseAddr("::ffff:192.0.2.77"), 24, 48); got.String() != "192.0.2.0/24" {
		t.Errorf("got %s", got)
	}
	if got := Network(netip.MustParseAddr("2001:db8:1:2::5"), 24, 48); got.String() != "2001:db8:1::/48" {
		t.Errorf("got %s", got)
	}
}

const asnTSV = `1.0.0.0	1.0.0.255	13335	US	CLOUDFLARENET
1.0.1.0	1.0.3.255	0	None	Not routed
1.0.4.0	1.0.7.255	38803	AU	GTELECOM-AUSTRALIA Gtelecom Pty Ltd
2001:db8::	2001:db8:ffff:ffff:ffff:ffff:ffff:ffff	64500	ZZ	DOC-EXAMPLE
`

func TestASNTable(t *testing.T) {
	tab, err := ParseASN(strings.NewReader(asnTSV))
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 3 {
		t.Errorf("Len = %d, want 3 (not-routed rows skipped)", tab.Len())
	}
	for ip, want := range map[string]uint32{
		"1.0.0.0":        13335,
		"1.0.0.255":      13335,
		"::ffff:1.0.0.7": 13335,
		"1.0.2.1":        0, // not routed
		"1.0.5.5":        38803,
		"1.0.8.0":        0,
		"0.255.255.255":  0,
		"2001:db8:5::1":  64500,
		"2001:db9::1":    0,
		"::1":            0,
	} {
		a, ok := tab.Lookup(netip.MustParseAddr(ip))
		if want == 0 && ok || want != 0 && (!ok || a.Number != want) {
			t.Errorf("Lookup(%s) = %v %v, want AS%d", ip, a, ok, want)
		}
	}
	a, _ := tab.Lookup(netip.MustParseAddr("1.0.5.5"))
	if a.String() != "AS38803" || a.Country != "AU" || !strings.HasPrefix(a.Name, "GTELECOM") {
		t.Errorf("got %+v", a)
	}
	for _, bad := range []string{"1.0.0.0\t1.0.0.255\n", "1.0.0.9\t1.0.0.1\t5\tUS\tX\n", "x\ty\t5\n", "1.0.0.0\t::1\t5\n"} {
		if _, err := ParseASN(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseASN(%q): no error", bad)
		}
	}
}

func TestDropList(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "drop.txt")
	b := filepath.Join(dir, "dropv6.txt")
	os.WriteFile(a, []byte("; Spamhaus DROP List\n; Last-Modified: whenever\n192.0.2.0/24 ; SBL123\n198.51.100.128/25 ; SBL456\n203.0.113.7\n"), 0o600)
	os.WriteFile(b, []byte("2001:db8:bad::/48 ; SBL789\n"), 0o600)
	d, err := LoadDrop(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 4 {
		t.Errorf("Len = %d, want 4", d.Len())
	}
	for ip, want := range map[string]string{
		"192.0.2.55":        "drop list drop.txt: 192.0.2.0/24 SBL123",
		"198.51.100.200":    "drop list drop.txt: 198.51.100.128/25 SBL456",
		"198.51.100.100":    "",
		"203.0.113.7":       "drop list drop.txt: 203.0.113.7/32",
		"2001:db8:bad:1::1": "drop list dropv6.txt: 2001:db8:bad::/48 SBL789",
		"2001:db8::1":       "",
		"::ffff:192.0.2.1":  "drop list drop.txt: 192.0.2.0/24 SBL123",
	} {
		_, reason, ok := d.Lookup(netip.MustParseAddr(ip))
		if ok != (want != "") || reason != want {
			t.Errorf("Lookup(%s) = %q %v, want %q", ip, reason, ok, want)
		}
	}
	// Reload picks up changes; a broken file keeps the last good lists.
	os.WriteFile(a, []byte("192.0.2.0/24\n"), 0o600)
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := d.Lookup(netip.MustParseAddr("198.51.100.200")); ok {
		t.Error("a network removed from the file is still listed after Reload")
	}
	os.WriteFile(a, []byte("not a cidr\n"), 0o600)
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), "drop.txt:1") {
		t.Errorf("Reload of a broken file: %v, want an error naming file and line", err)
	}
	if _, _, ok := d.Lookup(netip.MustParseAddr("192.0.2.1")); !ok {
		t.Error("a failed Reload dropped the last good list")
	}
	var none *DropList
	if _, _, ok := none.Lookup(netip.MustParseAddr("192.0.2.1")); ok || none.Len() != 0 {
		t.Error("a nil DropList lists something")
	}
}
