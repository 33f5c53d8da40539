package smtp

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Extensions are the SMTP service extensions a server announced in its
// EHLO reply, as far as moat cares: the ones whose parameters moat can
// check and carry to the backend, and STARTTLS.
type Extensions struct {
	Size     int64 // SIZE: the largest message in bytes; 0 when none was given
	EightBit bool  // 8BITMIME (RFC 6152): BODY=8BITMIME
	SMTPUTF8 bool  // SMTPUTF8 (RFC 6531): UTF-8 addresses
	DSN      bool  // DSN (RFC 3461): RET, ENVID, NOTIFY, ORCPT
	StartTLS bool
}

// ParseEHLO reads the extensions from a server's EHLO reply. The first line
// is the server's name; unknown keywords are ignored.
func ParseEHLO(r Reply) Extensions {
	var e Extensions
	for i, l := range r.Lines {
		if i == 0 {
			continue
		}
		kw, arg, _ := strings.Cut(strings.TrimSpace(l), " ")
		switch asciiUpper(kw) {
		case "SIZE":
			if n, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64); err == nil && n > 0 {
				e.Size = n
			}
		case "8BITMIME":
			e.EightBit = true
		case "SMTPUTF8":
			e.SMTPUTF8 = true
		case "DSN":
			e.DSN = true
		case "STARTTLS":
			e.StartTLS = true
		}
	}
	return e
}

// MailParams are the ESMTP parameters of a MAIL command, checked against
// what the server offered, in the form to pass on. Checking is strict on
// purpose: moat writes the command it sends to the backend from these,
// never the client's line, so a parameter moat does not understand cannot
// reach the backend, and one it does must mean the same to both.
type MailParams struct {
	Size     int64  // SIZE=, 0 when not given
	Body     string // BODY=: "", "7BIT" or "8BITMIME"
	SMTPUTF8 bool   // SMTPUTF8
	Ret      string // RET=: "", "FULL" or "HDRS"
	EnvID    string // ENVID= as sent (xtext)
}

// RcptParams are the ESMTP parameters of a RCPT command, checked like
// MailParams.
type RcptParams struct {
	Notify string // NOTIFY= as sent, upper-cased: "NEVER" or a list of SUCCESS, FAILURE, DELAY
	ORcpt  string // ORCPT= as sent: addr-type ";" xtext
}

// ParamError is a parameter the server refuses; Reply is the answer.
type ParamError struct{ Reply string }

func (e *ParamError) Error() string { return strings.TrimSpace(e.Reply) }

func unsupported(k string) error {
	return &ParamError{"555 5.5.4 Unsupported option: " + k + "\r\n"}
}

func badParam(k string) error {
	return &ParamError{"501 5.5.4 Bad " + k + " parameter syntax\r\n"}
}

// oneOf returns v in upper case when that is one of values (keywords are
// case-insensitive), "" when it is none.
func oneOf(v string, values ...string) string {
	u := asciiUpper(v)
	if slices.Contains(values, u) {
		return u
	}
	return ""
}

// CheckMailParams checks the parameters of a MAIL command against the
// extensions offered (ext) and the largest message the server takes
// (ext.Size, 0 for none).
func CheckMailParams(params map[string]string, ext Extensions) (MailParams, error) {
	var p MailParams
	for k, v := range params {
		switch {
		case k == "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || v == "" || v[0] == '+' {
				return p, badParam(k)
			}
			p.Size = n
		case k == "BODY" && ext.EightBit:
			if p.Body = oneOf(v, "7BIT", "8BITMIME"); p.Body == "" {
				return p, badParam(k)
			}
		case k == "SMTPUTF8" && ext.SMTPUTF8:
			if v != "" {
				return p, badParam(k)
			}
			p.SMTPUTF8 = true
		case k == "RET" && ext.DSN:
			if p.Ret = oneOf(v, "FULL", "HDRS"); p.Ret == "" {
				return p, badParam(k)
			}
		case k == "ENVID" && ext.DSN:
			// RFC 3461 4.4: at most 100 characters, xtext.
			if len(v) > 100 || !isXtext(v, false) {
				return p, badParam(k)
			}
			p.EnvID = v
		default:
			return p, unsupported(k)
		}
	}
	if ext.Size > 0 && p.Size > ext.Size {
		return p, &ParamError{ReplyTooLarge}
	}
	return p, nil
}

// CheckRcptParams checks the parameters of a RCPT command; utf8 says the
// transaction declared SMTPUTF8, which lets ORCPT carry UTF-8 (RFC 6533).
func CheckRcptParams(params map[string]string, ext Extensions, utf8 bool) (RcptParams, error) {
	var p RcptParams
	for k, v := range params {
		switch {
		case k == "NOTIFY" && ext.DSN:
			n, ok := checkNotify(v)
			if !ok {
				return p, badParam(k)
			}
			p.Notify = n
		case k == "ORCPT" && ext.DSN:
			// RFC 3461 4.2: addr-type ";" xtext, at most 500 characters.
			typ, addr, ok := strings.Cut(v, ";")
			if !ok || len(v) > 500 || !isKeyword(typ) || addr == "" || !isXtext(addr, utf8) {
				return p, badParam(k)
			}
			p.ORcpt = v
		default:
			return p, unsupported(k)
		}
	}
	return p, nil
}

// checkNotify checks NOTIFY: "NEVER", or one or more of SUCCESS, FAILURE
// and DELAY, each once.
func checkNotify(v string) (string, bool) {
	v = asciiUpper(v)
	if v == "NEVER" {
		return v, true
	}
	seen := map[string]bool{}
	for w := range strings.SplitSeq(v, ",") {
		switch w {
		case "SUCCESS", "FAILURE", "DELAY":
			if seen[w] {
				return "", false
			}
			seen[w] = true
		default:
			return "", false
		}
	}
	return v, true
}

// isXtext reports whether s is xtext (RFC 3461 4): printable ASCII but "+"
// and "=", and "+" followed by two upper-case hex digits. With utf8, any
// UTF-8 character beyond ASCII may appear too (RFC 6533's unitext).
func isXtext(s string, utf8ok bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) || !isUpperHex(s[i+1]) || !isUpperHex(s[i+2]) {
				return false
			}
			i += 2
		case c == '=':
			return false
		case c >= 0x80:
			r, n := utf8.DecodeRuneInString(s[i:])
			if !utf8ok || r == utf8.RuneError {
				return false
			}
			i += n - 1
		case c < '!' || c > '~':
			return false
		}
	}
	return true
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

// ASCII reports whether s holds only ASCII: an address that does not is
// allowed only in a transaction that declared SMTPUTF8.
func ASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// String writes the parameters as they go after "MAIL FROM:<addr>", with a
// leading space each, in a fixed order.
func (p MailParams) String() string {
	var b strings.Builder
	if p.Size > 0 {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(p.Size, 10))
	}
	if p.Body != "" {
		b.WriteString(" BODY=" + p.Body)
	}
	if p.SMTPUTF8 {
		b.WriteString(" SMTPUTF8")
	}
	if p.Ret != "" {
		b.WriteString(" RET=" + p.Ret)
	}
	if p.EnvID != "" {
		b.WriteString(" ENVID=" + p.EnvID)
	}
	return b.String()
}

// String writes the parameters as they go after "RCPT TO:<addr>".
func (p RcptParams) String() string {
	var b strings.Builder
	if p.Notify != "" {
		b.WriteString(" NOTIFY=" + p.Notify)
	}
	if p.ORcpt != "" {
		b.WriteString(" ORCPT=" + p.ORcpt)
	}
	return b.String()
}

// Needs reports the extensions the backend must offer to take p.
func (p MailParams) Needs() Extensions {
	return Extensions{EightBit: p.Body == "8BITMIME", SMTPUTF8: p.SMTPUTF8, DSN: p.Ret != "" || p.EnvID != ""}
}

// Needs reports the extensions the backend must offer to take p.
func (p RcptParams) Needs() Extensions {
	return Extensions{DSN: p.Notify != "" || p.ORcpt != ""}
}

// Lacks reports which of the extensions need asks for e does not offer, by
// keyword, or "" if e offers them all.
func (e Extensions) Lacks(need Extensions) string {
	switch {
	case need.EightBit && !e.EightBit:
		return "8BITMIME"
	case need.SMTPUTF8 && !e.SMTPUTF8:
		return "SMTPUTF8"
	case need.DSN && !e.DSN:
		return "DSN"
	}
	return ""
}
