package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"moat/internal/smtp"
)

// Greeting is what the backend says to a new connection: its banner and
// its reply to EHLO.
type Greeting struct {
	Banner smtp.Reply
	EHLO   smtp.Reply
}

// moat's own connections to the backend present themselves as coming from
// loopback, which every backend behind moat accepts.
var (
	selfRemote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0}
	selfLocal  = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25}
)

// Greet connects to the backend as moat's own connections do (PROXY
// header from loopback), reads the banner, says EHLO hostname, reads the
// reply and quits: nothing is sent but EHLO and QUIT. It tells an operator
// ("moat check", the start of "moat run") whether the backend answers as
// moat needs it to. A backend that refuses (a banner or EHLO reply other
// than 2xx) is an error that quotes its reply.
func (d *Dialer) Greet(ctx context.Context, hostname string) (Greeting, error) {
	var g Greeting
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	c, err := d.Dial(ctx, selfRemote, selfLocal)
	if err != nil {
		return g, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	br := bufio.NewReader(c)
	if g.Banner, err = smtp.ReadReply(br, 100); err != nil {
		return g, fmt.Errorf("relay: backend %s: reading its banner: %w%s", d.Addr, err, proxyHint(d.Proxy, err))
	}
	if g.Banner.Code/100 != 2 {
		return g, fmt.Errorf("relay: backend %s: banner %q", d.Addr, oneLine(g.Banner))
	}
	if _, err := fmt.Fprintf(c, "EHLO %s\r\n", hostname); err != nil {
		return g, fmt.Errorf("relay: backend %s: %w", d.Addr, err)
	}
	if g.EHLO, err = smtp.ReadReply(br, 100); err != nil {
		return g, fmt.Errorf("relay: backend %s: reading its EHLO reply: %w", d.Addr, err)
	}
	// Wait for QUIT's reply: the backend has then ended the session
	// and logged it, before this check's caller goes on.
	fmt.Fprint(c, "QUIT\r\n")
	smtp.ReadReply(br, 100)
	if g.EHLO.Code != 250 {
		return g, fmt.Errorf("relay: backend %s: EHLO %q", d.Addr, oneLine(g.EHLO))
	}
	return g, nil
}

// proxyHint says what a backend that hangs up or stays silent after the
// PROXY header most likely lacks.
func proxyHint(proxy string, err error) string {
	var ne net.Error
	if proxy == "none" || !(errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF)) {
		return ""
	}
	return " (does it expect the PROXY header moat sends? Postfix: smtpd_upstream_proxy_protocol = haproxy; or set backend_proxy_protocol = \"none\")"
}

// oneLine is a reply for a message: its code and lines on one line.
func oneLine(r smtp.Reply) string {
	return strings.TrimSpace(fmt.Sprintf("%d %s", r.Code, strings.Join(r.Lines, " / ")))
}
