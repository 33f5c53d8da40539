package traps

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"moat/internal/logfollow"
	"moat/internal/smtp"
)

// ProbeVerdict is what the backend says of an address.
type ProbeVerdict string

const (
	ProbeUnknown      ProbeVerdict = "unknown"      // 550 5.1.1 to RCPT: no such mailbox; may become a trap
	ProbeReal         ProbeVerdict = "real"         // 2xx to RCPT: a real mailbox; never a trap
	ProbeInconclusive ProbeVerdict = "inconclusive" // any other reply, or none: the candidate stays a candidate
)

// ProbeResult is a verdict and the backend's reply that gave it.
type ProbeResult struct {
	Verdict ProbeVerdict
	Reply   string // the reply to RCPT (or to the step that failed), on one line
}

// Probe asks the backend about one address.
type Probe interface {
	Probe(ctx context.Context, addr string) (ProbeResult, error)
}

// Dialer opens a connection to the backend on behalf of a client; the
// relay's Dialer is one (it writes the PROXY header).
type Dialer interface {
	Dial(ctx context.Context, remote, local net.Addr) (net.Conn, error)
}

// Prober asks the backend with an SMTP dialog that stops before DATA:
// EHLO, MAIL FROM:<>, RCPT TO:<addr>, QUIT. Nothing is ever sent.
type Prober struct {
	Dialer   Dialer
	Hostname string        // said in EHLO
	Timeout  time.Duration // for the whole dialog; default 30s
}

// The probe presents itself to the backend as coming from loopback, which
// every backend behind moat must accept (it is where moat's own
// connections come from) and which no postscreen or rate limit holds up.
// The log parsers never take 127.0.0.1 for a client (logfollow.ClientAddr),
// so the backend's refusals of the probe are nobody's evidence.
var (
	probeRemote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0}
	probeLocal  = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25}
)

// Probe runs the dialog. An error means the backend could not be asked
// (down, not SMTP); the result is then inconclusive.
func (p *Prober) Probe(ctx context.Context, addr string) (ProbeResult, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := p.Dialer.Dial(ctx, probeRemote, probeLocal)
	if err != nil {
		return ProbeResult{Verdict: ProbeInconclusive}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	br := bufio.NewReader(c)
	step := func(cmd string) (smtp.Reply, error) {
		if cmd != "" {
			if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
				return smtp.Reply{}, err
			}
		}
		return smtp.ReadReply(br, 100)
	}
	host := p.Hostname
	if host == "" {
		host = "localhost"
	}
	for _, s := range []struct{ cmd, name string }{{"", "banner"}, {"EHLO " + host, "EHLO"}, {"MAIL FROM:<>", "MAIL"}} {
		r, err := step(s.cmd)
		if err != nil {
			return ProbeResult{Verdict: ProbeInconclusive}, fmt.Errorf("traps: probe: %s: %w", s.name, err)
		}
		if r.Code/100 != 2 {
			return ProbeResult{Verdict: ProbeInconclusive, Reply: s.name + ": " + r.OneLine()}, nil
		}
	}
	r, err := step("RCPT TO:<" + addr + ">")
	if err != nil {
		return ProbeResult{Verdict: ProbeInconclusive}, fmt.Errorf("traps: probe: RCPT: %w", err)
	}
	step("QUIT")
	res := ProbeResult{Verdict: ProbeInconclusive, Reply: r.OneLine()}
	switch {
	case r.Code/100 == 2:
		res.Verdict = ProbeReal
	case replyUnknownUser(r):
		res.Verdict = ProbeUnknown
	}
	return res, nil
}

// replyUnknownUser says whether a reply to RCPT means "no such mailbox".
func replyUnknownUser(r smtp.Reply) bool {
	if len(r.Lines) == 0 {
		return false
	}
	status, text := logfollow.SplitStatus(r.Lines[0])
	return unknownUser(r.Code, status, text)
}

// unknownUser says whether a reply (code, enhanced status, text after the
// status) means "no such mailbox", the one answer that makes an address a
// trap. It is 550 with the enhanced code 5.1.1 ("bad destination mailbox
// address", RFC 3463), which Postfix gives for every unknown recipient
// ("550 5.1.1 <a@b>: Recipient address rejected: User unknown in …").
// Servers that send no enhanced code say it in words: Exim "550
// Unrouteable address" (its message when an ACL's "verify = recipient"
// fails) or "550 unknown user" (the message its default configuration sets
// for that ACL, see the Exim FAQ, Q0724), sendmail "550 <a@b>... User
// unknown", others "No such user". Every other reply — 552 5.2.2 mailbox full, 550 5.7.1
// policy, any 4xx — says nothing about whether the mailbox exists.
func unknownUser(code int, status, text string) bool {
	if code != 550 {
		return false
	}
	if status != "" {
		return status == "5.1.1"
	}
	text = strings.ToLower(text)
	if rest, ok := strings.CutPrefix(text, "<"); ok {
		// The address the reply names, then "..." or ":". A quoted
		// address could hold the words themselves: only a plain one
		// is skipped.
		i := strings.IndexByte(rest, '>')
		if i < 0 || strings.ContainsAny(rest[:i], "\" ") {
			return false
		}
		text = strings.TrimLeft(rest[i+1:], ".: ")
	}
	for _, w := range []string{"user unknown", "unknown user", "no such user", "unrouteable address"} {
		if strings.HasPrefix(text, w) {
			return true
		}
	}
	return false
}
