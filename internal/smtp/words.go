package smtp

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// The replies moat's grey dialog and its tarpit both give, written once. A
// bot that compares what it hears from moat as a grey host and as a black
// one must find the same words; only the pace differs. They are Postfix's
// words, the most common mail server's.
const (
	ReplyOK           = "250 2.0.0 Ok\r\n"
	ReplyMailOK       = "250 2.1.0 Ok\r\n"
	ReplyRcptOK       = "250 2.1.5 Ok\r\n"
	ReplyData         = "354 End data with <CR><LF>.<CR><LF>\r\n"
	ReplyBye          = "221 2.0.0 Bye\r\n"
	ReplyStartTLS     = "220 2.0.0 Ready to start TLS\r\n"
	ReplyNoTLS        = "454 4.7.0 TLS not available due to local problem\r\n"
	ReplyTLSActive    = "503 5.5.1 Error: TLS already active\r\n"
	ReplyVrfy         = "252 2.0.0 Send some mail, I'll try my best\r\n"
	ReplyUnknown      = "502 5.5.2 Error: command not recognized\r\n"
	ReplyBadSyntax    = "500 5.5.2 Error: bad syntax\r\n"
	ReplyTooLong      = "500 5.5.0 Error: line too long\r\n"
	ReplyNeedHelo     = "503 5.5.1 Error: send HELO/EHLO first\r\n"
	ReplyNestedMail   = "503 5.5.1 Error: nested MAIL command\r\n"
	ReplyNeedMail     = "503 5.5.1 Error: need MAIL command\r\n"
	ReplyNeedRcpt     = "503 5.5.1 Error: need RCPT command\r\n"
	ReplyNoRcpts      = "554 5.5.1 Error: no valid recipients\r\n"
	ReplyMailSyntax   = "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	ReplyRcptSyntax   = "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
	ReplyVrfySyntax   = "501 5.5.4 Syntax: VRFY address\r\n"
	ReplyEhloSyntax   = "501 5.5.4 Syntax: EHLO hostname\r\n"
	ReplyHeloSyntax   = "501 5.5.4 Syntax: HELO hostname\r\n"
	ReplyStartTLSArgs = "501 5.5.4 Syntax: STARTTLS\r\n"
	ReplyTooManyRcpts = "452 4.5.3 Error: too many recipients\r\n"
	ReplyGreylisted   = "451 4.7.1 Greylisted, please try again later\r\n"
	ReplyNeedUTF8     = "553 5.6.7 Must declare SMTPUTF8 to send unicode address\r\n"
	ReplyBadSender    = "501 5.1.7 Bad sender address syntax\r\n"
	ReplyBadRcpt      = "501 5.1.3 Bad recipient address syntax\r\n"
	ReplyTooLarge     = "552 5.3.4 Message size exceeds fixed limit\r\n"
)

// bannerText follows the host name in the banner: Debian's Postfix says
// "$myhostname ESMTP $mail_name (Debian/GNU)". It is what the most common
// mail server says, and every byte of it is a Stutter a held bot waits.
const bannerText = "ESMTP Postfix (Debian/GNU)"

// Words are the replies that name the host or depend on what the backend
// can carry: the banner, the EHLO and HELO replies and the 421s. One Words
// is shared by the grey dialog and the tarpit, so the EHLO a black host
// hears follows the one a grey host hears when the backend changes.
type Words struct {
	host string
	helo string

	// What a reload may change (Reshape), and the offer made from it
	// and from the backend's extensions last learnt. Readers load them;
	// writers (Learn, Reshape) hold mu.
	shape  atomic.Pointer[shape]
	offer  atomic.Pointer[Offer]
	mu     sync.Mutex
	learnt Extensions

	// The 421s that end a session, read-only.
	TooManyErrors   string // at max_errors
	TooManyCommands string // at max_commands
	Timeout         string // at an idle timeout
}

// Offer is what moat advertises at one moment: the extensions it accepts
// and the EHLO reply that announces them.
type Offer struct {
	Ext     Extensions // Size is the limit moat enforces
	ehlo    string     // with STARTTLS, when offered
	ehloTLS string     // under TLS: without STARTTLS
}

// EHLO returns the EHLO reply; tls says the session already runs TLS.
func (o *Offer) EHLO(tls bool) string {
	if tls {
		return o.ehloTLS
	}
	return o.ehlo
}

// shape is what of the words follows the configuration.
type shape struct {
	banner   string // the whole banner
	first    string // its first line, when the greet delay splits it
	starttls bool   // STARTTLS is offered (a certificate is configured)
	maxSize  int64  // moat's own message size limit
}

// NewWords returns the words of host (a name without spaces). split says
// the banner is sent in two lines with the greet delay between them;
// starttls that STARTTLS is offered; maxSize is moat's own size limit.
// Until Learn hears from the backend, moat offers everything it can carry.
func NewWords(host string, split, starttls bool, maxSize int64) *Words {
	w := &Words{
		host:            host,
		helo:            "250 " + host + "\r\n",
		TooManyErrors:   "421 4.7.0 " + host + " Error: too many errors\r\n",
		TooManyCommands: "421 4.7.0 " + host + " Error: too many commands\r\n",
		Timeout:         "421 4.4.2 " + host + " Error: timeout exceeded\r\n",
		learnt:          Extensions{EightBit: true, SMTPUTF8: true, DSN: true},
	}
	w.Reshape(split, starttls, maxSize)
	return w
}

// Reshape changes what a reload may change: whether the banner is split
// (a greet delay), whether STARTTLS is offered, and moat's own size limit.
// The offer is made again with the backend's extensions last learnt. A
// session reads the words as it goes: one that is under way picks up the
// new ones at its next reply.
func (w *Words) Reshape(split, starttls bool, maxSize int64) {
	sh := &shape{banner: "220 " + w.host + " " + bannerText + "\r\n", starttls: starttls, maxSize: maxSize}
	if split {
		sh.first = "220-" + w.host + " " + bannerText + "\r\n"
		sh.banner = sh.first + sh.banner
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.shape.Store(sh)
	w.offerLocked()
}

// Host returns the host name the words use.
func (w *Words) Host() string { return w.host }

// Banner returns the whole banner.
func (w *Words) Banner() string { return w.shape.Load().banner }

// BannerFirst returns the first line of a split banner and BannerLast the
// rest; without a split, BannerFirst is "". (Across a Reshape the two may
// come from different shapes: the client still gets one valid banner.)
func (w *Words) BannerFirst() string { return w.shape.Load().first }

// BannerLast returns what follows BannerFirst.
func (w *Words) BannerLast() string {
	sh := w.shape.Load()
	return sh.banner[len(sh.first):]
}

// HELO returns the reply to HELO.
func (w *Words) HELO() string { return w.helo }

// Offer returns what moat advertises now.
func (w *Words) Offer() *Offer { return w.offer.Load() }

// Learn sets what moat offers from the backend's extensions: what moat can
// carry through a hand-off and the backend takes. SIZE is the smaller of
// moat's limit and the backend's. SMTPUTF8 needs 8BITMIME (RFC 6531).
// It reports whether the offer changed.
func (w *Words) Learn(backend Extensions) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.learnt = backend
	return w.offerLocked()
}

// offerLocked makes the offer from the shape and the backend's extensions
// last learnt, and reports whether it changed. Call it with mu held.
func (w *Words) offerLocked() bool {
	sh, backend := w.shape.Load(), w.learnt
	e := Extensions{
		Size:     sh.maxSize,
		EightBit: backend.EightBit,
		SMTPUTF8: backend.SMTPUTF8 && backend.EightBit,
		DSN:      backend.DSN,
		StartTLS: sh.starttls,
	}
	if backend.Size > 0 && (e.Size <= 0 || backend.Size < e.Size) {
		e.Size = backend.Size
	}
	if old := w.offer.Load(); old != nil && old.Ext == e {
		return false
	}
	w.offer.Store(&Offer{Ext: e, ehlo: w.ehlo(e, sh.starttls), ehloTLS: w.ehlo(e, false)})
	return true
}

// ehlo writes the EHLO reply for e, in Postfix's order of keywords. VRFY,
// as Postfix offers it: both dialogs answer it, alike for every address.
// No CHUNKING: BDAT would let a message end where moat's DATA reader never
// looks. No AUTH, ETRN: moat takes mail for its domains, nothing else.
func (w *Words) ehlo(e Extensions, starttls bool) string {
	lines := []string{w.host, "PIPELINING"}
	if e.Size > 0 {
		lines = append(lines, "SIZE "+strconv.FormatInt(e.Size, 10))
	}
	lines = append(lines, "VRFY")
	if starttls {
		lines = append(lines, "STARTTLS")
	}
	lines = append(lines, "ENHANCEDSTATUSCODES")
	if e.EightBit {
		lines = append(lines, "8BITMIME")
	}
	if e.DSN {
		lines = append(lines, "DSN")
	}
	if e.SMTPUTF8 {
		lines = append(lines, "SMTPUTF8")
	}
	var b strings.Builder
	for i, l := range lines {
		if i < len(lines)-1 {
			b.WriteString("250-")
		} else {
			b.WriteString("250 ")
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	return b.String()
}
