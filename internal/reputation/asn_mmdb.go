package reputation

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// mmdbMarker starts an MMDB file's metadata, which the format puts in
// its last 128 KiB. That is how LoadASN tells an MMDB from a TSV file,
// whatever the file's name.
var mmdbMarker = []byte("\xab\xcd\xefMaxMind.com")

func isMMDB(b []byte) bool {
	tail := b[max(0, len(b)-128<<10):]
	return bytes.Contains(tail, mmdbMarker)
}

// mmdbASN is an ASN database in the MaxMind DB format: MaxMind's
// GeoLite2-ASN and GeoIP2-ISP, DB-IP's ASN databases (which use MaxMind's
// field names), and databases that name the AS "asn" ("AS64500" or a
// number) with a "name", as IPinfo's do.
type mmdbASN struct {
	db       *maxminddb.Reader
	networks int
}

// mmdbRecord is the part of a record moat reads. Fields it does not name
// are skipped without being decoded.
type mmdbRecord struct {
	Number  uint32 `maxminddb:"autonomous_system_number"`
	Org     string `maxminddb:"autonomous_system_organization"`
	Name    string `maxminddb:"name"`
	Country string `maxminddb:"country"`
}

// parseMMDB reads an MMDB file held in b. Every record is read once at
// load, so a damaged download is refused by "moat check" and at start
// rather than found at a lookup, and a database that names no AS (a
// GeoLite2-City file given as asn_db) is refused rather than silently
// finding nothing. b is moat's own copy: replacing the file on disk, as
// updaters do, cannot change what a running moat reads.
func parseMMDB(b []byte) (*mmdbASN, error) {
	db, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("not a valid MMDB file: %w", err)
	}
	m := &mmdbASN{db: db}
	named := 0
	for res := range db.Networks() {
		_, ok, err := decodeASN(res)
		if err != nil {
			return nil, fmt.Errorf("damaged MMDB file: network %s: %w", res.Prefix(), err)
		}
		m.networks++
		if ok {
			named++
		}
	}
	if named == 0 {
		return nil, fmt.Errorf("MMDB file of type %q has no AS number in its %d records (want autonomous_system_number or asn, as GeoLite2-ASN has)",
			db.Metadata.DatabaseType, m.networks)
	}
	return m, nil
}

func (m *mmdbASN) lookup(addr netip.Addr) (ASN, bool) {
	a, ok, err := decodeASN(m.db.Lookup(addr))
	return a, ok && err == nil
}

// decodeASN reads the AS of one lookup's record.
func decodeASN(res maxminddb.Result) (ASN, bool, error) {
	if !res.Found() {
		return ASN{}, false, res.Err()
	}
	var r mmdbRecord
	if err := res.Decode(&r); err != nil {
		return ASN{}, false, err
	}
	a := ASN{Number: r.Number, Name: r.Org, Country: r.Country}
	if a.Number == 0 {
		var v any
		if err := res.DecodePath(&v, "asn"); err == nil {
			a.Number = asNumber(v)
		}
		a.Name = r.Name
	}
	return a, a.Number != 0, nil
}

// asNumber reads an "asn" field: "AS64500", "64500" or a number.
func asNumber(v any) uint32 {
	switch n := v.(type) {
	case string:
		u, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(n), "AS"), 10, 32)
		if err == nil {
			return uint32(u)
		}
	case uint64:
		if n <= 1<<32-1 {
			return uint32(n)
		}
	case uint32:
		return n
	case uint16:
		return uint32(n)
	}
	return 0
}
