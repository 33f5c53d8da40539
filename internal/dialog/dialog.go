// Package dialog speaks SMTP with grey hosts: the ones moat does not know.
//
// A grey session waits out the greet delay (a client that talks first is an
// early talker and goes to the tarpit), then answers every RCPT with the
// same 451 4.7.1 until the greylist says the retry qualifies. At that moment
// the live session is handed to the real mail server: moat connects with a
// PROXY header, replays EHLO, MAIL and the RCPT, and from then on forwards
// each command and gives the client the backend's own reply. DATA is read
// with the strict reader (only CRLF.CRLF ends a message) and streamed to the
// backend; the client's final reply is always the backend's, so moat never
// says 250 for a message the backend did not take.
//
// A session must never relay for a black host: when a trap is named, the
// session moves to the tarpit, which has no way to the backend.
package dialog

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"moat/internal/classify"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/tarpit"
)

// Config bounds and describes a grey session.
type Config struct {
	Hostname       string
	GreetDelay     time.Duration
	MaxRcpts       int
	MaxCommands    int
	MaxErrors      int
	MaxMessageSize int64
	IdleTimeout    time.Duration
	DataTimeout    time.Duration
	BackendTimeout time.Duration
	TLS            *tls.Config // nil: STARTTLS is not offered
	Hooks          Hooks
}

// Hooks let other parts of moat learn from sessions. Nil funcs are skipped;
// they must not block.
type Hooks struct {
	// BackendRcpt is called with the backend's reply to each RCPT of a
	// handed-off session (550 5.1.1 marks an unknown recipient).
	BackendRcpt func(client netip.Addr, rcpt string, r smtp.Reply)
}

// Tarpit is where a session goes when its host turns black mid-session.
type Tarpit interface {
	Hold(conn net.Conn, client netip.Addr, s tarpit.Start) bool
}

// Backend dials the real mail server on behalf of a client.
type Backend interface {
	Dial(ctx context.Context, remote, local net.Addr) (net.Conn, error)
}

// Result says how a session ended, for the session's log line.
type Result struct {
	Verdict   string // early-talker, trap, greylisted, passed, quit, closed, timeout, error, …
	Reason    string
	Helo      string
	Sender    string
	Rcpts     int   // RCPT commands seen
	Deferred  int   // RCPTs answered 451 by the greylist
	Messages  int   // messages the backend accepted
	BytesIn   int64 // from the client
	BytesOut  int64 // to the client
	TLS       bool
	Tarpitted bool // the connection now belongs to the tarpit
	HandedOff bool // the session was passed to the backend
}

const (
	replyGreylisted = "451 4.7.1 Greylisted, please try again later\r\n"
	replyTempFail   = "451 4.3.0 Temporary failure, please try again later\r\n"
	replyMailOK     = "250 2.1.0 Ok\r\n"
)

// session is one grey SMTP session.
type session struct {
	ctx    context.Context
	cfg    *Config
	eng    *classify.Engine
	tp     Tarpit
	be     Backend
	client netip.Addr
	peer   Peer
	raw    net.Conn // the TCP connection
	conn   net.Conn // raw or its TLS layer
	cin    *countReader
	r      *smtp.Reader
	res    Result

	helo     string
	ehlo     bool
	inMail   bool
	sender   string // normalised
	rawMail  string // the MAIL arguments to replay: "<addr> SIZE=…"
	commands int
	errors   int
}

// Peer says who is at the other end of a connection. Behind a trusted load
// balancer the addresses come from its PROXY header, not from the socket.
type Peer struct {
	Client netip.Addr
	Remote net.Addr // the client's address and port, for the backend's PROXY header
	Local  net.Addr // the address the client connected to
	// Listed carries the verdict of the DNS list lookups started at
	// accept (classify.Engine.Lookup); nil when there are none. It is
	// read once, without waiting, when the greet delay is over.
	Listed <-chan classify.Verdict
}

// Serve runs a grey session on conn until it ends or moves to the tarpit.
// conn is closed on return unless Result.Tarpitted is set.
func Serve(ctx context.Context, conn net.Conn, peer Peer, cfg *Config, eng *classify.Engine, tp Tarpit, be Backend) (res Result) {
	client := peer.Client
	s := &session{ctx: ctx, cfg: cfg, eng: eng, tp: tp, be: be, client: client, peer: peer, raw: conn, conn: conn}
	s.cin = &countReader{r: conn}
	s.r = smtp.NewReader(s.cin)
	defer func() {
		s.res.BytesIn = s.cin.n
		if !s.res.Tarpitted {
			conn.Close()
		}
		res = s.res
	}()
	if !s.greet() {
		return
	}
	s.loop()
	return
}

// greet sends the first line of a multi-line banner, waits out the greet
// delay and then completes the banner. Real mail servers wait for the last
// banner line before they speak; bots that talk early are caught here, as
// Postfix postscreen does.
func (s *session) greet() bool {
	if s.cfg.GreetDelay > 0 {
		if !s.write("220-" + s.cfg.Hostname + " ESMTP\r\n") {
			return false
		}
		s.raw.SetReadDeadline(time.Now().Add(s.cfg.GreetDelay))
		buf := make([]byte, 1024)
		n, err := s.raw.Read(buf)
		s.raw.SetReadDeadline(time.Time{})
		if n > 0 {
			s.cin.n += int64(n)
			s.res.Verdict, s.res.Reason = "early-talker", fmt.Sprintf("sent %d bytes before the banner", n)
			if err := s.eng.EarlyTalker(s.client, "early talker: "+s.res.Reason); err != nil {
				s.res.Reason += " (not stored: " + err.Error() + ")"
			}
			s.toTarpit(tarpit.Start{Pending: buf[:n]})
			return false
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			s.res.Verdict, s.res.Reason = "closed", "left before the banner"
			return false
		}
	}
	if s.listed() {
		return false
	}
	return s.write("220 " + s.cfg.Hostname + " ESMTP\r\n")
}

// listed moves the session to the tarpit when the DNS lists, looked up
// since accept, found the host black. A lookup still running when the
// greet delay is over never delays the session; its verdict is stored
// for the next connection.
func (s *session) listed() bool {
	select {
	case v := <-s.peer.Listed:
		if v.Class != store.Black {
			return false
		}
		s.res.Verdict, s.res.Reason = "dnsbl", v.Reason
		s.toTarpit(tarpit.Start{})
		return true
	default:
		return false
	}
}

func (s *session) toTarpit(st tarpit.Start) {
	if s.conn != s.raw {
		// A TLS session cannot be stuttered byte by byte on the raw
		// socket; give the reply and end it. Nothing reaches the
		// backend either way.
		if st.Reply != "" {
			s.write(st.Reply)
		}
		s.write("421 4.7.0 " + s.cfg.Hostname + " closing connection\r\n")
		return
	}
	s.res.Tarpitted = s.tp.Hold(s.raw, s.client, st)
}

func (s *session) loop() {
	for {
		line, ok := s.readCommand()
		if !ok {
			return
		}
		if !s.command(smtp.ParseCommand(line)) {
			return
		}
	}
}

// readCommand reads the next command line within the idle timeout,
// answering over-long lines and enforcing the command limit. It returns
// false when the session is over.
func (s *session) readCommand() (string, bool) {
	for {
		s.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		line, err := s.r.ReadLine(smtp.MaxCommandLine)
		if err == smtp.ErrLineTooLong {
			if !s.fail("500 5.5.2 Error: line too long\r\n") {
				return "", false
			}
			continue
		}
		if err != nil {
			s.ended(err)
			return "", false
		}
		s.commands++
		if s.commands > s.cfg.MaxCommands {
			s.write("421 4.7.0 " + s.cfg.Hostname + " Error: too many commands\r\n")
			s.res.Verdict = "too-many-commands"
			return "", false
		}
		return line, true
	}
}

// ended records why the client went away.
func (s *session) ended(err error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		s.write("421 4.4.2 " + s.cfg.Hostname + " Error: timeout exceeded\r\n")
		s.res.Verdict = "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		if s.res.Verdict == "" {
			s.res.Verdict = "closed"
		}
	default:
		s.res.Verdict, s.res.Reason = "error", err.Error()
	}
}

// fail counts a client error and answers it; too many errors end the
// session.
func (s *session) fail(reply string) bool {
	s.errors++
	if s.errors > s.cfg.MaxErrors {
		s.write("421 4.7.0 " + s.cfg.Hostname + " Error: too many errors\r\n")
		s.res.Verdict = "too-many-errors"
		return false
	}
	return s.write(reply)
}

func (s *session) write(reply string) bool {
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
	n, err := io.WriteString(s.conn, reply)
	s.res.BytesOut += int64(n)
	return err == nil
}

func (s *session) resetTx() {
	s.inMail, s.sender, s.rawMail = false, "", ""
}

// command answers one command before the hand-off. It returns false when
// the session is over (or belongs to the tarpit).
func (s *session) command(c smtp.Command) bool {
	switch c.Verb {
	case "EHLO", "HELO":
		if c.Arg == "" {
			return s.fail("501 5.5.4 Syntax: " + c.Verb + " hostname\r\n")
		}
		s.helo, s.ehlo = c.Arg, c.Verb == "EHLO"
		s.res.Helo = c.Arg
		s.resetTx()
		if !s.ehlo {
			return s.write("250 " + s.cfg.Hostname + "\r\n")
		}
		return s.write(s.ehloReply())
	case "STARTTLS":
		return s.startTLS(c)
	case "MAIL":
		return s.mail(c)
	case "RCPT":
		return s.rcpt(c)
	case "DATA":
		if !s.inMail {
			return s.fail("503 5.5.1 Error: need RCPT command\r\n")
		}
		// Every recipient so far was deferred: there is nobody to
		// deliver to.
		return s.fail("554 5.5.1 Error: no valid recipients\r\n")
	case "RSET":
		s.resetTx()
		return s.write("250 2.0.0 Ok\r\n")
	case "NOOP":
		return s.write("250 2.0.0 Ok\r\n")
	case "QUIT":
		s.write("221 2.0.0 Bye\r\n")
		if s.res.Verdict == "" {
			s.res.Verdict = "quit"
		}
		return false
	case "VRFY":
		// Give nothing away about which addresses exist.
		return s.write("252 2.0.0 Send some mail, I'll try my best\r\n")
	case "HELP":
		return s.write("214 2.0.0 See RFC 5321\r\n")
	case "PROXY":
		// A PROXY header is honoured only from trusted_proxies, and
		// the server has read it before we get here. From anyone
		// else it is a client speaking out of turn, like an early
		// talker: black, and the rest of the session is the tarpit's.
		s.res.Verdict, s.res.Reason = "early-talker", "PROXY header from an untrusted client"
		if err := s.eng.EarlyTalker(s.client, "early talker: "+s.res.Reason); err != nil {
			s.res.Reason += " (not stored: " + err.Error() + ")"
		}
		s.toTarpit(tarpit.Start{Greeted: true, Reply: "500 5.5.2 Error: command not recognized\r\n", Pending: s.r.Pending()})
		return false
	case "BDAT", "AUTH", "EXPN", "ETRN", "TURN", "ATRN":
		return s.fail("502 5.5.1 Error: command not implemented\r\n")
	}
	return s.fail("500 5.5.2 Error: command not recognized\r\n")
}

// ehloReply lists exactly the extensions moat implements in the grey dialog
// and in the hand-off: no CHUNKING (BDAT is not relayed), no DSN or
// SMTPUTF8 (their parameters are not replayed), no AUTH.
func (s *session) ehloReply() string {
	lines := []string{s.cfg.Hostname, "PIPELINING", fmt.Sprintf("SIZE %d", s.cfg.MaxMessageSize), "8BITMIME", "ENHANCEDSTATUSCODES"}
	if s.cfg.TLS != nil && s.conn == s.raw {
		lines = append(lines, "STARTTLS")
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

func (s *session) startTLS(c smtp.Command) bool {
	if s.cfg.TLS == nil {
		return s.fail("502 5.5.1 Error: command not implemented\r\n")
	}
	if s.conn != s.raw {
		return s.fail("503 5.5.1 Error: TLS already active\r\n")
	}
	if c.Arg != "" {
		return s.fail("501 5.5.4 Syntax: STARTTLS\r\n")
	}
	if !s.write("220 2.0.0 Ready to start TLS\r\n") {
		return false
	}
	tc := tls.Server(s.raw, s.cfg.TLS)
	tc.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		s.res.Verdict, s.res.Reason = "error", "TLS handshake: "+err.Error()
		return false
	}
	tc.SetDeadline(time.Time{})
	// A fresh reader drops anything the client pipelined after STARTTLS
	// in the clear (CVE-2011-0411): it must not be taken as sent under
	// TLS.
	s.conn = tc
	s.cin = &countReader{r: tc, n: s.cin.n}
	s.r = smtp.NewReader(s.cin)
	s.helo, s.ehlo = "", false
	s.resetTx()
	s.res.TLS = true
	return true
}

func (s *session) mail(c smtp.Command) bool {
	if s.helo == "" {
		return s.fail("503 5.5.1 Error: send HELO/EHLO first\r\n")
	}
	if s.inMail {
		return s.fail("503 5.5.1 Error: nested MAIL command\r\n")
	}
	addr, params, err := smtp.ParseMail(c.Arg)
	if err != nil {
		return s.fail("501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
	}
	norm := ""
	if addr != "" {
		if norm, err = smtp.Normalize(addr); err != nil {
			return s.fail("501 5.1.7 Bad sender address syntax\r\n")
		}
	}
	replay := "<" + addr + ">"
	for k, v := range params {
		switch k {
		case "SIZE":
			var n int64
			if _, err := fmt.Sscan(v, &n); err != nil || n < 0 {
				return s.fail("501 5.5.4 Bad SIZE parameter\r\n")
			}
			if n > s.cfg.MaxMessageSize {
				return s.fail("552 5.3.4 Message size exceeds fixed limit\r\n")
			}
			replay += " SIZE=" + v
		case "BODY":
			if !s.ehlo {
				return s.fail("555 5.5.4 Unsupported option: BODY\r\n")
			}
			switch strings.ToUpper(v) {
			case "7BIT", "8BITMIME":
				replay += " BODY=" + strings.ToUpper(v)
			default:
				return s.fail("501 5.5.4 Bad BODY parameter\r\n")
			}
		default:
			return s.fail("555 5.5.4 Unsupported option: " + k + "\r\n")
		}
	}
	d, err := s.eng.Mail(s.client, norm)
	if d.Action == classify.Trap {
		s.res.Sender = norm
		s.res.Verdict, s.res.Reason = "trap", d.Reason
		if err != nil {
			s.res.Reason += " (not stored: " + err.Error() + ")"
		}
		s.toTarpit(tarpit.Start{Greeted: true, InMail: true, Reply: replyMailOK, Pending: s.r.Pending()})
		return false
	}
	s.inMail, s.sender, s.rawMail = true, norm, replay
	s.res.Sender = norm
	return s.write(replyMailOK)
}

func (s *session) rcpt(c smtp.Command) bool {
	if !s.inMail {
		return s.fail("503 5.5.1 Error: need MAIL command\r\n")
	}
	s.res.Rcpts++
	if s.res.Rcpts > s.cfg.MaxRcpts {
		return s.write("452 4.5.3 Error: too many recipients\r\n")
	}
	addr, params, err := smtp.ParseRcpt(c.Arg)
	if err != nil {
		return s.fail("501 5.5.4 Syntax: RCPT TO:<address>\r\n")
	}
	if len(params) > 0 {
		for k := range params {
			return s.fail("555 5.5.4 Unsupported option: " + k + "\r\n")
		}
	}
	norm, err := smtp.Normalize(addr)
	if err != nil {
		return s.fail("501 5.1.3 Bad recipient address syntax\r\n")
	}
	d, err := s.eng.Rcpt(s.client, s.sender, norm)
	switch d.Action {
	case classify.Trap:
		// The reply looks like any other grey recipient's; the rest
		// of the session is the tarpit's.
		s.res.Verdict, s.res.Reason = "trap", d.Reason
		if err != nil {
			s.res.Reason += " (not stored: " + err.Error() + ")"
		}
		s.toTarpit(tarpit.Start{Greeted: true, InMail: true, Reply: replyGreylisted, Pending: s.r.Pending()})
		return false
	case classify.Pass:
		s.res.Verdict, s.res.Reason = "passed", d.Reason
		s.handOff(addr)
		return false
	}
	if err != nil {
		// The store could not be asked: defer, never reject.
		s.res.Verdict, s.res.Reason = "tempfail", err.Error()
		return s.write(replyTempFail)
	}
	s.res.Deferred++
	if s.res.Verdict == "" || s.res.Verdict == "greylisted" {
		s.res.Verdict, s.res.Reason = "greylisted", d.Reason
	}
	return s.write(replyGreylisted)
}

// countReader counts the bytes a client sent.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// backendConn is the session's connection to the real mail server.
type backendConn struct {
	c       net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

func (b *backendConn) cmd(line string) (smtp.Reply, error) {
	b.c.SetWriteDeadline(time.Now().Add(b.timeout))
	if _, err := io.WriteString(b.c, line+"\r\n"); err != nil {
		return smtp.Reply{}, err
	}
	return b.reply(b.timeout)
}

func (b *backendConn) reply(timeout time.Duration) (smtp.Reply, error) {
	b.c.SetReadDeadline(time.Now().Add(timeout))
	return smtp.ReadReply(b.r, 100)
}

func (b *backendConn) close() {
	if b != nil {
		b.c.Close()
	}
}

// dial connects to the backend, reads its banner and replays the client's
// greeting. A reply other than success is returned as the error's reply.
func (s *session) dial() (*backendConn, *smtp.Reply, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.BackendTimeout)
	defer cancel()
	c, err := s.be.Dial(ctx, s.peer.Remote, s.peer.Local)
	if err != nil {
		return nil, nil, err
	}
	b := &backendConn{c: c, r: bufio.NewReaderSize(c, 1024), timeout: s.cfg.BackendTimeout}
	banner, err := b.reply(s.cfg.BackendTimeout)
	if err != nil {
		b.close()
		return nil, nil, fmt.Errorf("backend banner: %w", err)
	}
	if banner.Code != 220 {
		b.close()
		return nil, &banner, nil
	}
	verb := "HELO"
	if s.ehlo {
		verb = "EHLO"
	}
	r, err := b.cmd(verb + " " + s.helo)
	if err != nil {
		b.close()
		return nil, nil, fmt.Errorf("backend %s: %w", verb, err)
	}
	if r.Code != 250 {
		b.close()
		return nil, &r, nil
	}
	return b, nil, nil
}

// handOff passes the session to the backend at the RCPT whose retry
// qualified, then forwards the rest of the session.
func (s *session) handOff(rcpt string) {
	s.res.HandedOff = true
	b, refused, err := s.dial()
	if err != nil || refused != nil {
		// The host is white now; its next attempt is spliced. This
		// one must be deferred: nothing is accepted that the backend
		// has not accepted.
		if refused != nil {
			s.write(asRcptReply(*refused))
			s.res.Reason += "; backend refused: " + refused.String()
		} else {
			s.write("451 4.4.1 Temporary failure, please try again later\r\n")
			if err != nil {
				s.res.Reason += "; backend: " + err.Error()
			}
		}
		s.res.Verdict = "backend-unavailable"
		s.forwardLoop(nil, nil).close()
		return
	}
	r, err := b.cmd("MAIL FROM:" + s.rawMail)
	if err != nil {
		b.close()
		s.write("451 4.4.2 Temporary failure, please try again later\r\n")
		s.res.Verdict, s.res.Reason = "backend-unavailable", err.Error()
		return
	}
	var mailRefused *smtp.Reply
	if r.Code != 250 {
		mailRefused = &r
	}
	if !s.forwardRcpt(b, rcpt, mailRefused) {
		b.close()
		return
	}
	s.forwardLoop(b, mailRefused).close()
}

// asRcptReply turns a backend refusal at banner or greeting time into an
// answer to the RCPT the client is waiting on. It is always a 4xx, with
// the backend's text: a backend that will not even greet us is an outage
// or a misconfiguration as far as this sender can tell, and a 5xx here
// would bounce mail that a healthy backend would take.
func asRcptReply(r smtp.Reply) string {
	lines := make([]string, len(r.Lines))
	for i, l := range r.Lines {
		// Keep the enhanced status code in the same class as the
		// reply code (RFC 3463): "5.7.1 …" becomes "4.7.1 …".
		if len(l) > 4 && (l[0] == '2' || l[0] == '5') && l[1] == '.' {
			l = "4" + l[1:]
		}
		lines[i] = l
	}
	return smtp.Reply{Code: 451, Lines: lines}.String()
}

// forwardRcpt forwards one RCPT to the backend and its reply to the client.
func (s *session) forwardRcpt(b *backendConn, rcpt string, mailRefused *smtp.Reply) bool {
	if mailRefused != nil {
		return s.write(mailRefused.String())
	}
	r, err := b.cmd("RCPT TO:<" + rcpt + ">")
	if err != nil {
		s.write("451 4.4.2 Temporary failure, please try again later\r\n")
		s.res.Verdict, s.res.Reason = "backend-unavailable", err.Error()
		return false
	}
	s.backendRcpt(rcpt, r)
	return s.write(r.String())
}

// backendRcpt tells the hook what the backend answered to a RCPT.
func (s *session) backendRcpt(rcpt string, r smtp.Reply) {
	if h := s.cfg.Hooks.BackendRcpt; h != nil {
		if n, err := smtp.Normalize(rcpt); err == nil {
			h(s.client, n, r)
		}
	}
}

// forwardLoop relays the rest of a handed-off session one command at a
// time. b may be nil (the backend could not be reached); it is dialled
// again when a new transaction starts. It returns the backend connection
// still open, if any.
func (s *session) forwardLoop(b *backendConn, mailRefused *smtp.Reply) *backendConn {
	for {
		line, ok := s.readCommand()
		if !ok {
			if b != nil {
				b.cmd("QUIT")
			}
			return b
		}
		var err error
		if strings.ContainsAny(line, "\r\x00") {
			// Forwarded lines must mean the same to the backend as to
			// us: no stray CR or NUL inside a command.
			if !s.fail("500 5.5.2 Error: bad characters in command\r\n") {
				return b
			}
			continue
		}
		c := smtp.ParseCommand(line)
		switch c.Verb {
		case "QUIT":
			if b != nil {
				b.cmd("QUIT")
			}
			s.write("221 2.0.0 Bye\r\n")
			return b
		case "STARTTLS":
			if !s.write("454 4.7.0 TLS not available now\r\n") {
				return b
			}
			continue
		case "BDAT", "AUTH":
			if !s.fail("502 5.5.1 Error: command not implemented\r\n") {
				return b
			}
			continue
		case "EHLO", "HELO":
			if c.Arg == "" {
				if !s.fail("501 5.5.4 Syntax: " + c.Verb + " hostname\r\n") {
					return b
				}
				continue
			}
			s.helo, s.ehlo = c.Arg, c.Verb == "EHLO"
			mailRefused = nil
			var r smtp.Reply
			if b != nil {
				if r, err = b.cmd(line); err != nil {
					return s.lost(b, err)
				}
			} else {
				var refused *smtp.Reply
				if b, refused, err = s.dial(); err != nil || refused != nil {
					s.write("421 4.4.1 " + s.cfg.Hostname + " Error: mail server unavailable, try again later\r\n")
					return nil
				}
				r.Code = 250
			}
			// The client may only use what moat offered, whatever
			// the backend offers.
			switch {
			case r.Code != 250:
				s.write(r.String())
			case s.ehlo:
				s.write(s.ehloReply())
			default:
				s.write("250 " + s.cfg.Hostname + "\r\n")
			}
			continue
		}
		if b == nil {
			// A new transaction after the backend was lost or
			// never reached: try it again.
			if c.Verb == "RSET" || c.Verb == "NOOP" {
				s.write("250 2.0.0 Ok\r\n")
				continue
			}
			var refused *smtp.Reply
			b, refused, err = s.dial()
			if err != nil || refused != nil {
				b = nil
				s.write("421 4.4.1 " + s.cfg.Hostname + " Error: mail server unavailable, try again later\r\n")
				return nil
			}
		}
		switch c.Verb {
		case "MAIL":
			r, err := b.cmd(line)
			if err != nil {
				return s.lost(b, err)
			}
			mailRefused = nil
			if r.Code != 250 {
				mailRefused = &r
			}
			if !s.write(r.String()) {
				return b
			}
		case "RCPT":
			s.res.Rcpts++
			if mailRefused != nil {
				if !s.write(mailRefused.String()) {
					return b
				}
				continue
			}
			addr, _, perr := smtp.ParseRcpt(c.Arg)
			r, err := b.cmd(line)
			if err != nil {
				return s.lost(b, err)
			}
			if perr == nil {
				s.backendRcpt(addr, r)
			}
			if !s.write(r.String()) {
				return b
			}
		case "DATA":
			var ok bool
			if b, ok = s.data(b); !ok {
				return b
			}
			mailRefused = nil
		default:
			if c.Verb == "RSET" {
				mailRefused = nil
			}
			r, err := b.cmd(line)
			if err != nil {
				return s.lost(b, err)
			}
			if !s.write(r.String()) {
				return b
			}
		}
	}
}

// lost answers a command whose backend connection broke.
func (s *session) lost(b *backendConn, err error) *backendConn {
	b.close()
	s.write("421 4.4.2 " + s.cfg.Hostname + " Error: connection to the mail server lost, try again later\r\n")
	s.res.Verdict, s.res.Reason = "backend-lost", err.Error()
	return nil
}

// data relays one DATA command. The client's last reply is the backend's
// reply to the end of data, or a 4xx when the backend could not give one.
// It returns the backend connection (nil if it was lost) and whether the
// session goes on.
func (s *session) data(b *backendConn) (*backendConn, bool) {
	r, err := b.cmd("DATA")
	if err != nil {
		return s.lost(b, err), false
	}
	if r.Code != 354 {
		return b, s.write(r.String())
	}
	if !s.write(r.String()) {
		return b, false
	}
	s.conn.SetReadDeadline(time.Now().Add(s.cfg.DataTimeout))
	dr := s.r.Data(s.cfg.MaxMessageSize)
	b.c.SetWriteDeadline(time.Now().Add(s.cfg.DataTimeout))
	_, werr := copyData(b.c, dr)
	var rerr error
	if werr != nil {
		var re *readError
		if errors.As(werr, &re) {
			rerr, werr = re.err, nil
		}
	}
	switch {
	case rerr == smtp.ErrTooLarge:
		// The backend holds a partial message without its end; closing
		// the connection makes it discard it. Read on so the dialog
		// stays in sync.
		b.close()
		if err := dr.Drain(4 * s.cfg.MaxMessageSize); err != nil {
			return nil, false
		}
		return nil, s.write("552 5.3.4 Error: message size exceeds fixed limit\r\n")
	case rerr == smtp.ErrBareLF || rerr == smtp.ErrBareCR:
		// SMTP smuggling defence: a message must end only at
		// CRLF.CRLF, and any bare CR or LF could make moat and the
		// backend disagree on where it ends. The backend never saw an
		// end, so it discards what it got.
		b.close()
		what := "<LF>"
		if rerr == smtp.ErrBareCR {
			what = "<CR>"
		}
		s.write("521 5.5.2 " + s.cfg.Hostname + " Error: bare " + what + " received\r\n")
		s.res.Verdict, s.res.Reason = "protocol-violation", "bare "+what+" in DATA"
		return nil, false
	case rerr != nil:
		// The client went away or stalled mid-message: the backend
		// must not get an end, so it discards the partial message.
		b.close()
		s.ended(rerr)
		return nil, false
	case werr != nil:
		// The backend went away mid-message. Read the client's message
		// to its end and defer it: the client keeps the message.
		b.close()
		if err := dr.Drain(4 * s.cfg.MaxMessageSize); err != nil {
			return nil, false
		}
		s.res.Reason = "backend lost during DATA: " + werr.Error()
		return nil, s.write("451 4.4.2 Error: connection to the mail server lost, please try again later\r\n")
	}
	final, err := b.reply(s.cfg.DataTimeout)
	if err != nil {
		b.close()
		s.res.Reason = "no reply from backend after DATA: " + err.Error()
		return nil, s.write("451 4.4.2 Error: no reply from the mail server, please try again later\r\n")
	}
	if final.Code == 250 {
		s.res.Messages++
		if _, err := s.eng.Accepted(s.client, s.sender, s.res.Reason); err != nil {
			s.res.Reason += " (not whitelisted: " + err.Error() + ")"
		}
	}
	return b, s.write(final.String())
}

// readError marks an error that came from the client side of a copy.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// copyData copies the client's DATA stream to the backend, telling read
// errors (client side) from write errors (backend side).
func copyData(dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 32*1024)
	var n int64
	for {
		nr, er := src.Read(buf)
		if nr > 0 {
			nw, ew := dst.Write(buf[:nr])
			n += int64(nw)
			if ew != nil {
				return n, ew
			}
		}
		if er == io.EOF {
			return n, nil
		}
		if er != nil {
			return n, &readError{er}
		}
	}
}
