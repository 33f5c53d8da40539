package migrate

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"moat/internal/store"
)

// parseSpamdb reads what OpenBSD's spamdb(8) prints with no arguments,
// one entry per line, fields separated by "|":
//
//	WHITE|ip|||first|pass|expire|block|pass   (no HELO: two empty fields)
//	GREY|ip|helo|from|to|first|pass|expire|block|pass
//	TRAPPED|ip|expire
//	SPAMTRAP|address
//
// Times are seconds since 1970. A WHITE host passed the greylist: it
// stays white until expire. A TRAPPED host hit a spamtrap: black until
// expire. SPAMTRAP is an address only spammers write to. A GREY entry is
// a triplet waiting out the greylist: first seen at first, passed at pass
// once a retry came late enough (until then pass is first plus the grey
// expiry, as expire is), block counting the attempts turned away. Some
// spamd forks print DOMAIN|domain lines (their allowed-domains list):
// nothing for moat, skipped.
func parseSpamdb(r io.Reader, n *Counts, put sink) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if text == "" {
			continue
		}
		e, err := spamdbEntry(text, line, n)
		if err != nil {
			return &lineError{"spamdb", line, err}
		}
		if e == nil {
			continue
		}
		if err := put(*e); err != nil {
			return &lineError{"spamdb", line, err}
		}
	}
	if err := sc.Err(); err != nil {
		return scanError("spamdb", line, err)
	}
	if line == 0 {
		return &lineError{"spamdb", 1, fmt.Errorf("empty file: want the output of spamdb")}
	}
	return nil
}

// spamdbFields is how many fields each kind of spamdb line has.
var spamdbFields = map[string]int{"WHITE": 9, "GREY": 10, "TRAPPED": 3, "SPAMTRAP": 2, "DOMAIN": 2}

// spamdbEntry reads one line. It returns nil, nil for a line with
// nothing to store (noted in n).
func spamdbEntry(text string, line int, n *Counts) (*entry, error) {
	f := strings.Split(text, "|")
	kind := f[0]
	want := spamdbFields[kind]
	switch {
	case want == 0:
		return nil, fmt.Errorf("entry type %s: want WHITE, GREY, TRAPPED or SPAMTRAP (is this spamdb's output?)", clip(kind))
	case len(f) < want || len(f) > want && kind != "GREY":
		return nil, fmt.Errorf("%s entry with %d fields, want %d", kind, len(f), want)
	}
	switch kind {
	case "DOMAIN":
		n.skip(line, "DOMAIN %s: spamd's allowed domains mean nothing to moat", clip(f[1]))
		return nil, nil
	case "SPAMTRAP":
		a, ok := address(f[1], false)
		if !ok || a == "" {
			return nil, fmt.Errorf("SPAMTRAP %s: not an address", clip(f[1]))
		}
		return &entry{trap: a}, nil
	}
	ip, err := netip.ParseAddr(f[1])
	if err != nil || ip.Zone() != "" {
		return nil, fmt.Errorf("%s %s: not an IP address", kind, clip(f[1]))
	}
	ip = ip.Unmap()
	if kind == "TRAPPED" {
		exp, err := unixTime(f[2], "expiry")
		if err != nil {
			return nil, err
		}
		// No times but the expiry: the import's own time stands for
		// first and last seen.
		return &entry{host: &store.Host{Prefix: store.HostPrefix(ip), Class: store.Black,
			Reason: "imported from spamd: trapped", Expires: exp}}, nil
	}
	// The five numbers are the last five fields: a HELO, sender or
	// recipient holding "|" moves them to the right, never the type and
	// the address to the left.
	nums := f[len(f)-5:]
	var t [3]time.Time
	for i, what := range []string{"first seen", "pass", "expiry"} {
		if t[i], err = unixTime(nums[i], what); err != nil {
			return nil, err
		}
	}
	first, pass, exp := t[0], t[1], t[2]
	var counts [2]uint32
	for i, what := range []string{"blocked count", "passed count"} {
		v, err := strconv.ParseInt(nums[3+i], 10, 64)
		if err != nil || v < -2 || v > 1<<31 {
			return nil, fmt.Errorf("%s %s: not a count", what, clip(nums[3+i]))
		}
		counts[i] = uint32(max(v, 0))
	}
	if exp.IsZero() {
		return nil, fmt.Errorf("%s entry without an expiry", kind)
	}
	if kind == "WHITE" {
		if f[2] != "" || f[3] != "" {
			return nil, fmt.Errorf("WHITE entry with a sender or recipient: not spamdb's format")
		}
		last := first
		if pass.After(last) {
			last = pass
		}
		reason := fmt.Sprintf("imported from spamd: white, %d messages passed", counts[1])
		return &entry{host: &store.Host{Prefix: store.HostPrefix(ip), Class: store.White,
			Reason: reason, First: first, Last: last, Expires: exp}}, nil
	}
	// GREY: helo, from and to are fields 2 to 4 unless one of them held
	// a "|"; then which is which cannot be told.
	if len(f) != want {
		n.skip(line, "GREY entry of %s: its HELO, sender or recipient holds a \"|\": skipped", ip)
		return nil, nil
	}
	sender, ok1 := address(f[3], true)
	rcpt, ok2 := address(f[4], false)
	if !ok1 || !ok2 || rcpt == "" {
		n.skip(line, "GREY entry of %s: sender %s or recipient %s is not an address: skipped", ip, clip(f[3]), clip(f[4]))
		return nil, nil
	}
	if first.IsZero() {
		return nil, fmt.Errorf("GREY entry without a first-seen time")
	}
	// Until a retry came late enough, spamd keeps pass at the entry's
	// expiry; an earlier pass is the time of that retry.
	last := first
	if pass.After(first) && pass.Before(exp) {
		last = pass
	}
	return &entry{attempt: &store.Attempt{First: first, Last: last, Count: max(counts[0], 1), Expires: exp},
		client: ip, sender: sender, rcpt: rcpt}, nil
}
