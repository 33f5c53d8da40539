package smtp

import (
	"errors"
	"strings"
)

// Command is one parsed command line.
type Command struct {
	Verb string // upper-cased: "EHLO", "MAIL", "RCPT", ...
	Arg  string // the rest of the line, trimmed of spaces and tabs
}

// ParseCommand splits a command line into its verb and argument. It never
// fails: an unknown or empty verb is for the dialog to answer.
//
// The verb is upper-cased in ASCII only, so that no Unicode case folding can
// turn an odd verb into a known one.
func ParseCommand(line string) Command {
	line = strings.Trim(line, " \t")
	verb, arg, _ := strings.Cut(line, " ")
	if i := strings.IndexByte(verb, '\t'); i >= 0 {
		verb, arg = line[:i], line[i+1:]
	}
	return Command{Verb: asciiUpper(verb), Arg: strings.Trim(arg, " \t")}
}

// ParseMail parses the argument of MAIL: "FROM:<a@b> SIZE=123 BODY=8BITMIME".
// It returns the address between the angle brackets ("" for the null sender
// "<>") and the ESMTP parameters with upper-cased keys (nil if none). The
// address is not checked beyond its syntax on the wire; use Normalize.
//
// Like Postfix without strict_rfc821_envelopes, it is lenient where
// leniency costs nothing: FROM in any case, spaces around the colon, and an
// address without angle brackets, as some old clients send.
func ParseMail(arg string) (addr string, params map[string]string, err error) {
	return parsePath(arg, "FROM", true)
}

// ParseRcpt parses the argument of RCPT: "TO:<a@b> NOTIFY=NEVER". It is like
// ParseMail, except that the empty path "<>" is an error. "<postmaster>"
// without a domain is accepted here and by Normalize (RFC 5321, 4.5.1).
func ParseRcpt(arg string) (addr string, params map[string]string, err error) {
	return parsePath(arg, "TO", false)
}

var (
	errNoPrefix   = errors.New("smtp: syntax error: expected FROM:<address> or TO:<address>")
	errPath       = errors.New("smtp: syntax error in address")
	errEmptyRcpt  = errors.New("smtp: syntax error: empty recipient address")
	errParam      = errors.New("smtp: syntax error in parameters")
	errDuplicated = errors.New("smtp: syntax error: parameter given twice")
)

// parsePath parses "KEYWORD:<path> params".
func parsePath(arg, keyword string, nullOK bool) (string, map[string]string, error) {
	s := strings.TrimLeft(arg, " \t")
	if len(s) < len(keyword) || !strings.EqualFold(s[:len(keyword)], keyword) {
		return "", nil, errNoPrefix
	}
	s = strings.TrimLeft(s[len(keyword):], " \t")
	if !strings.HasPrefix(s, ":") {
		return "", nil, errNoPrefix
	}
	s = strings.TrimLeft(s[1:], " \t")

	var addr, rest string
	if strings.HasPrefix(s, "<") {
		end := closingBracket(s)
		if end < 0 {
			return "", nil, errPath
		}
		addr, rest = s[1:end], s[end+1:]
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			return "", nil, errPath
		}
	} else {
		// No brackets: the address runs to the first blank.
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			i = len(s)
		}
		addr, rest = s[:i], s[i:]
		// It must be what would be a valid path within brackets.
		if addr == "" || closingBracket("<"+addr+">") != len(addr)+1 {
			return "", nil, errPath
		}
	}
	if HasControl(addr) {
		return "", nil, errPath
	}
	if addr == "" && !nullOK {
		return "", nil, errEmptyRcpt
	}

	params, err := parseParams(rest)
	if err != nil {
		return "", nil, err
	}
	return addr, params, nil
}

// closingBracket returns the index of the '>' that closes the '<' at s[0],
// skipping quoted strings and backslash escapes within them, or -1.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++ // the escaped character, whatever it is
		case c == '"':
			quoted = !quoted
		case !quoted && c == '>':
			return i
		case !quoted && (c == '<' || c == ' ' || c == '\t'):
			return -1
		}
	}
	return -1
}

// parseParams parses blank-separated ESMTP parameters "KEY=value" or "KEY"
// (RFC 5321, 4.1.2). A key without a value maps to "".
func parseParams(s string) (map[string]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return nil, nil
	}
	params := make(map[string]string, len(fields))
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		if !isKeyword(k) || HasControl(v) {
			return nil, errParam
		}
		k = asciiUpper(k)
		if _, dup := params[k]; dup {
			return nil, errDuplicated
		}
		params[k] = v
	}
	return params, nil
}

// isKeyword reports whether s is an esmtp-keyword: (ALPHA / DIGIT)
// *(ALPHA / DIGIT / "-").
func isKeyword(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// HasControl reports whether s holds an ASCII control character (NUL, CR,
// LF, DEL, ...), none of which belongs in an address or parameter.
func HasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// asciiUpper upper-cases the ASCII letters of s and leaves every other byte
// alone.
func asciiUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
