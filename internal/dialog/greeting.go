package dialog

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/tarpit"
)

// greet sends the first line of a split banner, waits out the greet delay
// and then completes the banner. Real mail servers wait for the last
// banner line before they speak; bots that talk early are caught here, as
// Postfix postscreen does.
func (s *session) greet() bool {
	if s.cfg.GreetDelay > 0 {
		if !s.write(s.words.BannerFirst()) {
			return false
		}
		s.raw.SetReadDeadline(time.Now().Add(s.cfg.GreetDelay))
		buf := make([]byte, 1024)
		n, err := s.raw.Read(buf)
		s.raw.SetReadDeadline(time.Time{})
		if n > 0 {
			s.in.n += int64(n)
			why := fmt.Sprintf("sent %d bytes before the banner", n)
			err := s.eng.EarlyTalker(s.client, "early talker: "+why)
			if s.enforce(EarlyTalker, store.SourceEarlyTalk, why) {
				s.note("not stored", err)
				s.toTarpit(tarpit.Start{Greeted: true, Reply: s.words.BannerLast(), Pending: buf[:n], Source: store.SourceEarlyTalk})
				return false
			}
			// Observe mode: what it said early is its first command.
			s.in.early = buf[:n]
		}
		var ne net.Error
		if n == 0 && (!errors.As(err, &ne) || !ne.Timeout()) {
			s.verdict(Closed, "left before the banner")
			return false
		}
	}
	if s.listed() {
		return false
	}
	return s.write(s.words.BannerLast())
}

// listed moves the session to the tarpit when the DNS lists, looked up
// since accept, found the host black. A lookup still running when the
// greet delay is over never delays the session; its verdict is stored
// for the next connection.
func (s *session) listed() bool {
	select {
	case v := <-s.peer.Listed:
		if v.Class != store.Black || !s.enforce(Listed, v.Source, v.Reason) {
			return false
		}
		s.toTarpit(tarpit.Start{Greeted: true, Reply: s.words.BannerLast(), Source: v.Source})
		return true
	default:
		return false
	}
}

// hello answers EHLO and HELO. Either ends the transaction (RFC 5321
// 4.1.4), and the backend, if attached, is left: the next command that
// needs it dials again and greets it with the new name.
func (s *session) hello(c smtp.Command) answer {
	if c.Arg == "" || smtp.HasControl(c.Arg) {
		if c.Verb == "EHLO" {
			return fault(smtp.ReplyEhloSyntax)
		}
		return fault(smtp.ReplyHeloSyntax)
	}
	s.tx = nil
	s.dropBackend()
	s.helo, s.ehlo = c.Arg, c.Verb == "EHLO"
	s.res.Helo = c.Arg
	if !s.ehlo {
		s.offer = nil
		return reply(s.words.HELO())
	}
	// What this session may use is what it was offered now, whatever
	// the backend offers later.
	s.offer = s.words.Offer()
	return reply(s.offer.EHLO(s.tls != nil))
}

// offered returns the extensions the client was offered; after HELO only
// the size limit applies.
func (s *session) offered() smtp.Extensions {
	if s.offer == nil {
		return smtp.Extensions{Size: s.words.Offer().Ext.Size}
	}
	return s.offer.Ext
}

func (s *session) startTLS(arg string) answer {
	switch {
	case s.cfg.TLS == nil:
		return fault(smtp.ReplyUnknown)
	case s.tls != nil:
		return fault(smtp.ReplyTLSActive)
	case arg != "":
		return fault(smtp.ReplyStartTLSArgs)
	}
	if !s.write(smtp.ReplyStartTLS) {
		return over
	}
	tc := tls.Server(s.raw, s.cfg.TLS)
	tc.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		s.verdict(Error, "TLS handshake: "+err.Error())
		return over
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	// A fresh reader drops anything the client pipelined after STARTTLS
	// in the clear (CVE-2011-0411): it must not be taken as sent under
	// TLS. The session starts again (RFC 3207 4.2), and the backend, if
	// attached, learns of the TLS in the PROXY header of a new connection.
	s.conn, s.tls = tc, &st
	s.in = &clientReader{c: tc, n: s.in.n}
	s.r = smtp.NewReader(s.in)
	s.tx = nil
	s.dropBackend()
	s.helo, s.ehlo, s.offer = "", false, nil
	s.res.TLS = true
	return answer{}
}

// proxyLine answers a PROXY header from a client that is not a trusted
// proxy. The server reads the header of trusted ones before we get here;
// from anyone else it is a client speaking out of turn, like an early
// talker: black, and the rest of the session is the tarpit's.
func (s *session) proxyLine() answer {
	const why = "PROXY header from an untrusted client"
	err := s.eng.EarlyTalker(s.client, "early talker: "+why)
	if !s.enforce(EarlyTalker, store.SourceEarlyTalk, why) {
		return fault(smtp.ReplyUnknown)
	}
	s.note("not stored", err)
	s.toTarpit(s.handOver(smtp.ReplyUnknown, s.r.Pending(), store.SourceEarlyTalk, ""))
	return over
}

// toTarpit hands the connection to the tarpit, with nothing left of the
// backend's side of the session.
func (s *session) toTarpit(st tarpit.Start) {
	s.dropBackend()
	if s.conn != s.raw {
		// A TLS session cannot be stuttered byte by byte on the raw
		// socket; give the reply and end it. Nothing reaches the
		// backend either way.
		if st.Reply != "" {
			s.write(st.Reply)
		}
		s.write("421 4.7.0 " + s.words.Host() + " closing connection\r\n")
		return
	}
	s.res.Tarpitted = s.tp.Hold(s.raw, s.client, st)
	s.res.TarpitFull = !s.res.Tarpitted
}
