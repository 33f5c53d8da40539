package logfollow

import (
	"net/netip"
	"strings"
	"time"
)

// Entry is the part of a log line that the log writer and the program's
// tag fix: which program wrote the line, and what it wrote. Text is still
// mixed: the program's own fields come first, then whatever it quotes from
// a client.
type Entry struct {
	Program string // the tag without its process id: "postfix/smtpd", "amavis"
	Text    string // everything after "tag[pid]: "
}

// ParseSyslog reads the header of a line as syslog daemons and Postfix's
// maillog_file write it:
//
//	Mar  3 06:25:02 mx postfix/smtpd[1207]: …                 (RFC 3164: rsyslog's default, journalctl)
//	Dec 01 17:33:17 mx postfix/smtpd[9765]: …                 (Postfix maillog_file)
//	2026-03-03T06:25:02.123456+01:00 mx postfix/smtpd[1207]: … (RFC 3339: rsyslog's precise format)
//
// ok is false for any other shape: such a line is not read at all.
func ParseSyslog(line string) (Entry, bool) {
	rest, ok := cutTimestamp(line)
	if !ok {
		return Entry{}, false
	}
	host, rest, ok := strings.Cut(rest, " ")
	if !ok || host == "" {
		return Entry{}, false
	}
	i := 0
	for i < len(rest) && isTagByte(rest[i]) {
		i++
	}
	if i == 0 {
		return Entry{}, false
	}
	prog := rest[:i]
	rest = rest[i:]
	if pid, ok := strings.CutPrefix(rest, "["); ok {
		j := strings.IndexByte(pid, ']')
		if j < 1 || !allDigits(pid[:j]) {
			return Entry{}, false
		}
		rest = pid[j+1:]
	}
	text, ok := strings.CutPrefix(rest, ": ")
	if !ok {
		return Entry{}, false
	}
	return Entry{Program: prog, Text: text}, true
}

// Daemon is the last element of a Postfix program tag: "smtpd" for
// "postfix/smtpd" and for "postfix-in/submission/smtpd".
func (e Entry) Daemon() string {
	return e.Program[strings.LastIndexByte(e.Program, '/')+1:]
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// cutTimestamp removes the timestamp and the space after it.
func cutTimestamp(line string) (string, bool) {
	if len(line) > 4 && allDigits(line[:4]) && line[4] == '-' {
		ts, rest, ok := strings.Cut(line, " ")
		if !ok {
			return "", false
		}
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			return "", false
		}
		return rest, true
	}
	// "Mmm dd hh:mm:ss " with the day space-padded, zero-padded or
	// alone.
	if len(line) < 4 || line[3] != ' ' || !isMonth(line[:3]) {
		return "", false
	}
	rest := strings.TrimPrefix(line[4:], " ")
	day, rest, ok := strings.Cut(rest, " ")
	if !ok || len(day) < 1 || len(day) > 2 || !allDigits(day) {
		return "", false
	}
	clock, rest, ok := strings.Cut(rest, " ")
	if !ok || len(clock) != 8 || clock[2] != ':' || clock[5] != ':' ||
		!allDigits(clock[:2]) || !allDigits(clock[3:5]) || !allDigits(clock[6:]) {
		return "", false
	}
	return rest, true
}

func isMonth(s string) bool {
	for _, m := range months {
		if s == m {
			return true
		}
	}
	return false
}

func isTagByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == '/'
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Moat's own connections to the backend — the trap probe, and every
// hand-off when no PROXY header names the client — come from loopback, and
// the probe's PROXY header names 127.0.0.1. A log line about 127.0.0.1 or
// ::1 is about moat, never about a client, and gives no evidence.
var (
	moatV4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	moatV6 = netip.IPv6Loopback()
)

// ClientAddr reads an IP address that a program wrote in a field of its
// own (Postfix's "name[addr]", rspamd's "ip: addr"). It returns the address
// unmapped and without a zone, and ok is false for anything that is not an
// address or is one of moat's own.
func ClientAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	if a.IsUnspecified() || a == moatV4 || a == moatV6 {
		return netip.Addr{}, false
	}
	return a, true
}
