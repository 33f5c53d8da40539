package smtp

import (
	"errors"
	"strings"
	"unicode/utf8"
)

var (
	errAddrNoAt    = errors.New("smtp: address is not local@domain")
	errAddrLocal   = errors.New("smtp: bad local part in address")
	errAddrDomain  = errors.New("smtp: bad domain in address")
	errAddrChars   = errors.New("smtp: address holds control characters or invalid UTF-8")
	errAddrRouting = errors.New("smtp: bad source route in address")
)

// specials are the characters that may not appear unquoted in a local part
// or in a domain name (RFC 5322, 3.2.3), plus blanks.
const specials = "()<>[]:;@\\,\" \t"

// Normalize returns the form of an address that moat uses as a key: for
// spamtraps, greylisting triplets and recipient lists. It is not the form to
// pass on; moat hands the backend what the client sent.
//
//   - Blanks around the address and a source route ("@a,@b:user@dom", which
//     RFC 5321 says to accept and ignore) are removed.
//   - The local part is lower-cased. RFC 5321 lets a server treat it as
//     case-sensitive, but almost none does and mail admins expect
//     "Trap@dom" to hit the trap "trap@dom" and a greylisted sender not to
//     start over because it changed case.
//   - A quoted local part that needs no quotes ("\"john\"@dom") is
//     unquoted, so that quoting cannot dodge a trap.
//   - The domain is lower-cased and loses one trailing dot.
//
// Addresses that are not local@domain are an error, except "postmaster"
// without a domain (RFC 5321, 4.5.1), which becomes "postmaster". Dots in
// the local part are not checked (some mobile carriers hand out
// "john..doe"), since refusing them would lose mail for no gain.
func Normalize(addr string) (string, error) {
	s := strings.Trim(addr, " \t")
	if !utf8.ValidString(s) || HasControl(s) {
		return "", errAddrChars
	}
	if strings.HasPrefix(s, "@") {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return "", errAddrRouting
		}
		s = s[i+1:]
	}
	if strings.EqualFold(s, "postmaster") {
		return "postmaster", nil
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", errAddrNoAt
	}
	local, err := normalizeLocal(s[:at])
	if err != nil {
		return "", err
	}
	domain, err := normalizeDomain(s[at+1:])
	if err != nil {
		return "", err
	}
	return local + "@" + domain, nil
}

// Domain returns the domain of a normalized address, or "" if it has none.
func Domain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return addr[at+1:]
}

func normalizeLocal(l string) (string, error) {
	if l == "" {
		return "", errAddrLocal
	}
	if l[0] != '"' {
		if strings.ContainsAny(l, specials) {
			return "", errAddrLocal
		}
		return strings.ToLower(l), nil
	}

	// A quoted string: check it and take its content.
	if len(l) < 2 || l[len(l)-1] != '"' {
		return "", errAddrLocal
	}
	var content strings.Builder
	q := l[1 : len(l)-1]
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case '\\':
			i++
			if i == len(q) {
				return "", errAddrLocal
			}
		case '"':
			return "", errAddrLocal
		}
		content.WriteByte(q[i])
	}
	c := content.String()
	if c != "" && !strings.ContainsAny(c, specials) {
		return strings.ToLower(c), nil
	}
	return strings.ToLower(l), nil
}

func normalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", errAddrDomain
	}
	if d[0] == '[' {
		// An address literal: "[192.0.2.1]" or "[IPv6:2001:db8::1]".
		if len(d) < 3 || d[len(d)-1] != ']' || strings.ContainsAny(d[1:len(d)-1], "[]\\ \t") {
			return "", errAddrDomain
		}
		return strings.ToLower(d), nil
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || strings.ContainsAny(label, specials) {
			return "", errAddrDomain
		}
	}
	return strings.ToLower(d), nil
}
