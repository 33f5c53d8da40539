package dialog

import (
	"errors"
	"io"
	"strings"
	"time"

	"moat/internal/classify"
	"moat/internal/smtp"
	"moat/internal/store"
)

// backendRcpt gives a recipient that passed the policy to the backend and
// passes its reply back. The trap check has been made: a trap never gets
// here.
func (s *session) backendRcpt(rc recipient) answer {
	s.res.HandedOff = true
	if s.tx.lost {
		return reply(replyTryLater)
	}
	r, failed := s.exchange("RCPT TO:<"+rc.addr+">"+rc.params.String(), rc.params.Needs())
	if failed != nil {
		return *failed
	}
	if h := s.cfg.Hooks.BackendRcpt; h != nil {
		h(s.client, rc.norm, r)
	}
	if r.Code/100 == 2 {
		s.tx.rcpts = append(s.tx.rcpts, rc)
	}
	return reply(s.relayed(r))
}

// data answers DATA: the host's class is read once more, the backend is
// brought to where the session is, and the message goes to it.
func (s *session) data(arg string) answer {
	switch {
	case s.tx == nil:
		return fault(smtp.ReplyNeedRcpt)
	case len(s.tx.rcpts) == 0:
		// Every recipient so far was deferred or refused: there is
		// nobody to deliver to.
		return fault(smtp.ReplyNoRcpts)
	case s.tx.lost:
		return reply(replyTryLater)
	}
	d, err := s.eng.Data(s.client)
	switch d.Action {
	case classify.Black:
		if s.enforce(Black, d.Source, d.Reason) {
			// The tarpit answers the DATA itself, and swallows the
			// message.
			pending := append([]byte("DATA\r\n"), s.r.Pending()...)
			s.toTarpit(s.handOver("", pending, d.Source, ""))
			return over
		}
	case classify.Defer:
		if s.enforce(TempFail, store.SourceUnknown, "store unavailable before DATA") {
			s.note("store", err)
			return reply(replyTempFail)
		}
	}
	r, failed := s.exchange("DATA", smtp.Extensions{})
	if failed != nil {
		return *failed
	}
	if r.Code != 354 {
		return reply(s.relayed(r))
	}
	if !s.write(r.String()) {
		return over
	}
	return s.message()
}

// message streams one message to the backend after its 354. The client's
// last reply is the backend's reply to the end of data, or a 4xx when the
// backend could not give one; the transaction ends either way.
func (s *session) message() answer {
	b, tx := s.backend, s.tx
	s.tx, b.inTx = nil, false
	limit := s.cfg.MaxMessageSize
	if b.ext.Size > 0 && b.ext.Size < limit {
		limit = b.ext.Size
	}
	s.in.data(s.cfg.DataTimeout, s.cfg.MinDataRate)
	dr := s.r.Data(limit)
	rerr, werr := copyData(b, dr)
	s.in.data(0, 0)
	drain := func() bool {
		if err := dr.Drain(4 * limit); err != nil {
			s.ended(err)
			return false
		}
		return true
	}
	switch {
	case rerr == smtp.ErrTooLarge:
		// The backend holds a partial message without its end; closing
		// the connection makes it discard it. Read on so the dialog
		// stays in sync.
		s.abandonBackend()
		if !drain() {
			return over
		}
		return reply(smtp.ReplyTooLarge)
	case rerr == smtp.ErrSmuggling:
		// An end of data written to be one to some servers and not to
		// others: only a smuggler writes that. The backend never saw an
		// end, so it discards what it got; the host is black from now on
		// (evidence that proves a bot, so nothing it sent was accepted
		// that could have been mail).
		s.abandonBackend()
		s.verdict(Smuggling, "smuggling: "+dr.Seq()+" in DATA")
		s.note("not stored", s.eng.Smuggler(s.client, dr.Seq()+" in DATA"))
		s.write(s.badNewline(firstBare(dr.Seq())))
		return over
	case rerr == smtp.ErrBareLF, rerr == smtp.ErrBareCR, rerr == smtp.ErrNUL:
		// Some broken but legitimate software writes a bare line end, so
		// this is held against nobody; but the message is refused, and
		// the session ends, as Postfix's smtpd_forbid_bare_newline does.
		s.abandonBackend()
		what := map[error]string{smtp.ErrBareLF: "<LF>", smtp.ErrBareCR: "<CR>", smtp.ErrNUL: "<NUL>"}[rerr]
		s.verdict(BareNewline, "bare "+what+" in DATA")
		s.write(s.badNewline(what))
		return over
	case rerr != nil:
		// The client went away or stalled mid-message: the backend must
		// not get an end, so it discards the partial message.
		s.abandonBackend()
		s.ended(rerr)
		return over
	case werr != nil:
		// The backend went away mid-message. Read the client's message
		// to its end and defer it: the client keeps the message.
		s.abandonBackend()
		s.backendEvent(BackendBroke)
		s.verdict(BackendLost, "backend lost during DATA: "+werr.Error())
		if !drain() {
			return over
		}
		return reply(replyLost)
	}
	final, err := b.reply(s.cfg.DataDoneTimeout)
	if err != nil {
		s.abandonBackend()
		s.backendEvent(BackendBroke)
		s.verdict(BackendLost, "no reply from the backend after DATA: "+err.Error())
		return reply("451 4.4.2 Error: no reply from the mail server, please try again later\r\n")
	}
	if final.Code == 250 {
		s.res.Messages++
		switch {
		case s.passed:
			// Only now has the host retried successfully: "those that
			// successfully retry are whitelisted" (unless stronger
			// evidence stands, classify decides).
			_, err := s.eng.Accepted(s.client, tx.sender, s.passReason)
			s.note("not whitelisted", err)
		case s.res.WouldVerdict <= TempFail:
			// Observe mode, a message enforce mode would have
			// greylisted: the host is remembered with it.
			rcpts := make([]string, len(tx.rcpts))
			for i, rc := range tx.rcpts {
				rcpts[i] = rc.norm
			}
			s.note("not remembered", s.eng.Delivered(s.client, tx.sender, rcpts))
		}
	} else if final.Code != 421 {
		// The transaction is over for the client, but a backend may keep
		// it after refusing the message (Postfix does): a new one must
		// not meet a nested MAIL.
		if r, err := b.cmd("RSET"); err != nil || r.Code != 250 {
			s.dropBackend()
		}
	}
	return reply(s.relayed(final))
}

// badNewline is the 521 for a bare line end or NUL (what is <LF>, <CR> or
// <NUL>), in Postfix's words.
func (s *session) badNewline(what string) string {
	return "521 5.5.2 " + s.words.Host() + " Error: bare " + what + " received\r\n"
}

// firstBare returns the first line end or NUL in a smuggling sequence that
// is not part of a CRLF: the one a bare-newline refusal names.
func firstBare(seq string) string {
	rest := strings.ReplaceAll(seq, "<CR><LF>", "")
	if i := strings.IndexByte(rest, '<'); i >= 0 {
		if j := strings.IndexByte(rest[i:], '>'); j > 0 {
			return rest[i : i+j+1]
		}
	}
	return "<LF>"
}

// copyData copies the client's message to the backend, telling read errors
// (client side) from write errors (backend side). Each write has its own
// deadline: a backend that stops reading is lost, not waited for.
func copyData(b *backendConn, src io.Reader) (rerr, werr error) {
	buf := make([]byte, 32*1024)
	for {
		nr, er := src.Read(buf)
		if nr > 0 {
			b.c.SetWriteDeadline(time.Now().Add(b.timeout))
			if _, ew := b.c.Write(buf[:nr]); ew != nil {
				return nil, ew
			}
		}
		if errors.Is(er, io.EOF) {
			return nil, nil
		}
		if er != nil {
			return er, nil
		}
	}
}
