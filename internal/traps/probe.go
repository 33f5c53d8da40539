package traps

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"moat/internal/smtp"
)

// ProbeVerdict is what the backend says of an address.
type ProbeVerdict string

const (
	ProbeUnknown      ProbeVerdict = "unknown"      // 5xx to RCPT: no such mailbox; may become a trap
	ProbeReal         ProbeVerdict = "real"         // 2xx to RCPT: a real mailbox; never a trap
	ProbeInconclusive ProbeVerdict = "inconclusive" // 4xx, or a refusal before RCPT: ask again later
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
			return ProbeResult{Verdict: ProbeInconclusive, Reply: s.name + ": " + oneLine(r)}, nil
		}
	}
	r, err := step("RCPT TO:<" + addr + ">")
	if err != nil {
		return ProbeResult{Verdict: ProbeInconclusive}, fmt.Errorf("traps: probe: RCPT: %w", err)
	}
	step("QUIT")
	res := ProbeResult{Verdict: ProbeInconclusive, Reply: oneLine(r)}
	switch {
	case r.Code/100 == 2:
		res.Verdict = ProbeReal
	case r.Permanent():
		res.Verdict = ProbeUnknown
	}
	return res, nil
}

func oneLine(r smtp.Reply) string {
	return strings.TrimSpace(strings.ReplaceAll(r.String(), "\r\n", " "))
}
