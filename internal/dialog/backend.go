package dialog

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"moat/internal/smtp"
)

// Replies for a backend that cannot take part: always 4xx, so the client
// keeps its mail and tries again.
const (
	replyUnavailable = "451 4.4.1 Error: mail server unavailable, please try again later\r\n"
	replyLost        = "451 4.4.2 Error: connection to the mail server lost, please try again later\r\n"
	replyTryLater    = "451 4.3.0 Error: please try again later\r\n"
)

// quitWait bounds how long moat waits for the backend's answer to QUIT.
const quitWait = 5 * time.Second

// backendConn is the session's connection to the real mail server.
type backendConn struct {
	c       net.Conn
	r       *bufio.Reader
	timeout time.Duration
	ext     smtp.Extensions // what this connection's EHLO offered
	inTx    bool            // it has the transaction's MAIL and its recipients
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

// dropBackend ends the backend's side of the session with QUIT, which
// aborts any transaction there: nothing is delivered.
func (s *session) dropBackend() {
	b := s.backend
	if b == nil {
		return
	}
	s.backend = nil
	// The backend's answer lets it log a clean end; it is not needed.
	b.c.SetDeadline(time.Now().Add(min(s.cfg.BackendTimeout, quitWait)))
	if _, err := io.WriteString(b.c, "QUIT\r\n"); err == nil {
		smtp.ReadReply(b.r, 100)
	}
	b.c.Close()
}

// abandonBackend closes the backend connection in the middle of a
// message, without a word: whatever it got of the message has no end, so
// it discards it. (QUIT would be taken for message content.)
func (s *session) abandonBackend() {
	if s.backend != nil {
		s.backend.c.Close()
		s.backend = nil
	}
}

// lostBackend answers a command whose backend connection broke.
func (s *session) lostBackend(err error) answer {
	s.abandonBackend()
	s.backendEvent(BackendBroke)
	s.verdict(BackendLost, err.Error())
	return reply(replyLost)
}

// relayed is the answer to give the client for a backend's reply. A
// backend's verdict on the sender, a recipient or the message is passed
// on as it is; a reply that can only mean trouble between moat and the
// backend becomes a 4xx, since moat never sends a command out of order or
// one it did not check: 421 (the backend is closing), and 500, 502, 503,
// 504 and 555 (it did not take moat's command).
func (s *session) relayed(r smtp.Reply) string {
	switch r.Code {
	case 421:
		s.dropBackend()
		s.backendEvent(BackendBroke)
		s.verdict(BackendLost, "backend: "+r.OneLine())
		return temporary(r)
	case 500, 502, 503, 504, 555:
		s.backendEvent(BackendBroke)
		s.verdict(BackendLost, "backend: "+r.OneLine())
		return temporary(r)
	}
	return r.String()
}

// temporary turns a backend's refusal into a 451 with its text: the
// client keeps the mail, and learns what the backend said.
func temporary(r smtp.Reply) string {
	lines := make([]string, len(r.Lines))
	for i, l := range r.Lines {
		// Keep the enhanced status code in the same class as the reply
		// code (RFC 3463): "5.7.1 …" becomes "4.7.1 …".
		if len(l) > 4 && (l[0] == '2' || l[0] == '5') && l[1] == '.' {
			l = "4" + l[1:]
		}
		lines[i] = l
	}
	if len(lines) == 0 {
		return replyTryLater
	}
	return smtp.Reply{Code: 451, Lines: lines}.String()
}

// exchange brings the backend to where the session is and, unless line is
// "", sends it line and returns its reply; need are the extensions line
// uses. This is the robust hand-off: whenever the backend refused or
// dropped, the next command that needs it comes here, dials again and
// replays EHLO, MAIL and every recipient the client was told 250 for,
// before anything else. A connection kept from an earlier command that
// answers 421 or fails at once was closed under us (the backend timed it
// out while the client was idle): it is replaced once before the client
// hears of it. When the backend cannot be brought there, the answer is
// for the command at hand, and always a 4xx for a backend problem.
//
// With line "", the reply is the backend's to the MAIL sent, if one was.
func (s *session) exchange(line string, need smtp.Extensions) (smtp.Reply, *answer) {
	for retry := s.backend != nil; ; retry = false {
		r, a, stale, err := s.tryExchange(line, need)
		switch {
		case !stale:
			return r, a
		case !retry:
			return r, s.failed(r, err)
		}
		s.abandonBackend()
	}
}

// tryExchange is one attempt of exchange; stale says the connection broke
// (err) or is closing (r is a 421) before it answered anything else: a
// kept one may be replaced.
func (s *session) tryExchange(line string, need smtp.Extensions) (r smtp.Reply, a *answer, stale bool, err error) {
	if s.backend == nil {
		if a := s.connect(); a != nil {
			return r, a, false, nil
		}
	}
	b, tx := s.backend, s.tx
	if tx != nil && !b.inTx {
		if a := s.lacks(tx.params.Needs()); a != nil {
			return r, a, false, nil
		}
		params := tx.params
		if !s.ehlo {
			// After HELO no parameter means anything to the backend;
			// SIZE, the only one moat took, was checked.
			params = smtp.MailParams{}
		}
		mail, err := b.cmd("MAIL FROM:<" + tx.from + ">" + params.String())
		if err != nil || mail.Code == 421 {
			return mail, nil, true, err
		}
		if mail.Code/100 != 2 {
			a := reply(s.relayed(mail))
			return mail, &a, false, nil
		}
		b.inTx = true
		for _, rc := range tx.rcpts {
			rr, err := b.cmd("RCPT TO:<" + rc.addr + ">" + rc.params.String())
			if err != nil || rr.Code == 421 {
				return rr, nil, true, err
			}
			if rr.Code/100 != 2 {
				// The client was told 250 for this recipient and the
				// backend will not take it now: the message can only be
				// deferred, as a whole.
				tx.lost = true
				s.dropBackend()
				s.backendEvent(BackendBroke)
				s.verdict(BackendLost, "backend refused a recipient again: "+rr.OneLine())
				a := reply(replyTryLater)
				return rr, &a, false, nil
			}
		}
		r = mail
	}
	if line == "" {
		return r, nil, false, nil
	}
	if a := s.lacks(need); a != nil {
		return r, a, false, nil
	}
	r, err = b.cmd(line)
	if err != nil || r.Code == 421 {
		return r, nil, true, err
	}
	return r, nil, false, nil
}

// failed is the answer for a command whose backend connection broke (err)
// or is closing (a 421 reply).
func (s *session) failed(r smtp.Reply, err error) *answer {
	var a answer
	if err != nil {
		a = s.lostBackend(err)
	} else {
		a = reply(s.relayed(r))
	}
	return &a
}

// lacks answers 4xx when the backend connection does not offer an
// extension the client uses: moat offered it, from what the backend
// offered before; its next EHLO will not.
func (s *session) lacks(need smtp.Extensions) *answer {
	if kw := s.backend.ext.Lacks(need); kw != "" {
		s.verdict(BackendUnavailable, "backend does not offer "+kw)
		a := reply(replyTryLater)
		return &a
	}
	return nil
}

// maxFailedDials bounds the connections to the backend that fail (refused,
// unreachable) in one transaction: a client that keeps sending recipients
// while the backend refuses must not make moat hammer it with connections.
// The rest of the transaction gets 451 at once; the client tries later.
const maxFailedDials = 2

// connect dials the backend and greets it as the client greeted moat.
func (s *session) connect() *answer {
	if s.tx != nil && s.tx.failedDials >= maxFailedDials {
		a := reply(replyUnavailable)
		return &a
	}
	b, refused, err := s.dial(false)
	if (err != nil || refused != nil) && s.tx != nil {
		s.tx.failedDials++
	}
	switch {
	case err != nil:
		s.backendEvent(BackendDialFailed)
		s.verdict(BackendUnavailable, "backend: "+err.Error())
		a := reply(replyUnavailable)
		return &a
	case refused != nil:
		// A backend that will not even greet us is an outage or a
		// misconfiguration as far as this client can tell; a 5xx would
		// bounce mail a healthy backend would take.
		s.backendEvent(BackendGreetRefused)
		s.verdict(BackendUnavailable, "backend refused: "+(*refused).OneLine())
		a := reply(temporary(*refused))
		return &a
	}
	s.backend = b
	s.backendEvent(BackendAttached)
	return nil
}

// dial connects to the backend (with the client's address and TLS use in
// the PROXY header), reads its banner and replays the client's greeting.
// When the client spoke TLS, the backend offers STARTTLS and is not on
// this machine's loopback, the connection goes on under TLS; plain asks
// for no TLS (a handshake failed). A reply other than success is returned
// as refused.
func (s *session) dial(plain bool) (*backendConn, *smtp.Reply, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.BackendTimeout)
	defer cancel()
	b, banner, err := connect(ctx, s.be, s.cfg.BackendTimeout, s.peer.Remote, s.peer.Local, s.tls)
	if err != nil {
		return nil, nil, err
	}
	c := b.c
	if banner.Code != 220 {
		c.Close()
		return nil, &banner, nil
	}
	r, err := b.greet(s.helo, s.ehlo)
	if err != nil || r.Code != 250 {
		c.Close()
		return nil, refusal(r, err), err
	}
	if !s.ehlo {
		return b, nil, nil
	}
	b.ext = smtp.ParseEHLO(r)
	// Every hand-off tells moat what the backend offers now, and so what
	// moat offers grey hosts (and the tarpit's EHLO with it).
	s.words.Learn(b.ext)
	if plain || s.tls == nil || s.cfg.BackendTLS == nil || !b.ext.StartTLS || onLoopback(c.RemoteAddr()) {
		return b, nil, nil
	}
	if r, err := b.cmd("STARTTLS"); err != nil || r.Code != 220 {
		if err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("STARTTLS: %w", err)
		}
		return b, nil, nil // refused: the session goes on in the clear
	}
	tc := tls.Client(c, s.cfg.BackendTLS)
	tc.SetDeadline(time.Now().Add(s.cfg.BackendTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		// Opportunistic, as MTAs do among themselves: a backend whose
		// TLS is broken still gets the mail, on a new connection.
		c.Close()
		return s.dial(true)
	}
	tc.SetDeadline(time.Time{})
	b.c, b.r = tc, bufio.NewReaderSize(tc, 1024)
	r, err = b.greet(s.helo, true)
	if err != nil || r.Code != 250 {
		tc.Close()
		return nil, refusal(r, err), err
	}
	b.ext = smtp.ParseEHLO(r)
	return b, nil, nil
}

// connect dials the backend for the client at remote (clientTLS: its
// TLS, for the PROXY header) and reads its banner, whatever it says.
func connect(ctx context.Context, be Backend, timeout time.Duration, remote, local net.Addr, clientTLS *tls.ConnectionState) (*backendConn, smtp.Reply, error) {
	c, err := be.DialTLS(ctx, remote, local, clientTLS)
	if err != nil {
		return nil, smtp.Reply{}, err
	}
	b := &backendConn{c: c, r: bufio.NewReaderSize(c, 1024), timeout: timeout}
	banner, err := b.reply(timeout)
	if err != nil {
		c.Close()
		return nil, smtp.Reply{}, fmt.Errorf("banner: %w", err)
	}
	return b, banner, nil
}

// greet sends EHLO or HELO with the client's name.
func (b *backendConn) greet(name string, ehlo bool) (smtp.Reply, error) {
	verb := "HELO "
	if ehlo {
		verb = "EHLO "
	}
	r, err := b.cmd(verb + name)
	if err != nil {
		return r, fmt.Errorf("%s: %w", strings.TrimSpace(verb), err)
	}
	return r, nil
}

// refusal is r as a refusal, or nil when there was an error instead.
func refusal(r smtp.Reply, err error) *smtp.Reply {
	if err != nil {
		return nil
	}
	return &r
}

// onLoopback reports whether a is a loopback address: a connection that
// never leaves this machine needs no TLS of its own.
func onLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}
