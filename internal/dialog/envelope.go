package dialog

import (
	"errors"

	"moat/internal/classify"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/tarpit"
)

// Replies of the envelope phase that only the grey dialog gives.
const (
	replyTempFail = "451 4.3.0 Temporary failure, please try again later\r\n"
	// A trap named through a host that is vouched for: refused like an
	// unknown mailbox, and the session goes on.
	replyRcptRefused   = "550 5.1.1 Recipient address rejected: User unknown\r\n"
	replySenderRefused = "550 5.1.0 Sender address rejected: User unknown\r\n"
)

// mail answers MAIL. The host's class is read again and the sender checked
// against the traps; once the backend is attached, it gets the command and
// its reply is the answer.
func (s *session) mail(arg string) answer {
	switch {
	case s.helo == "":
		return fault(smtp.ReplyNeedHelo)
	case s.tx != nil:
		return fault(smtp.ReplyNestedMail)
	}
	addr, params, err := smtp.ParseMail(arg)
	if err != nil {
		return fault(smtp.ReplyMailSyntax)
	}
	mp, err := smtp.CheckMailParams(params, s.offered())
	if err != nil {
		return fault(paramReply(err))
	}
	if !smtp.ASCII(addr) && !mp.SMTPUTF8 {
		return fault(smtp.ReplyNeedUTF8)
	}
	sender := ""
	if addr != "" {
		if sender, err = smtp.Normalize(addr); err != nil {
			return fault(smtp.ReplyBadSender)
		}
	}
	s.res.Sender = sender
	s.tx = &transaction{from: addr, sender: sender, params: mp}
	d, err := s.eng.Mail(s.client, sender)
	switch d.Action {
	case classify.Trap, classify.Black:
		if s.enforce(blackVerdict(d), d.Source, d.Reason) {
			return s.black(err, smtp.ReplyMailOK, d.Source, "")
		}
	case classify.Refuse:
		if s.enforce(Refused, d.Source, d.Reason) {
			s.tx = nil
			s.note("not stored", err)
			return reply(replySenderRefused)
		}
	}
	if !s.res.HandedOff {
		return reply(smtp.ReplyMailOK)
	}
	r, failed := s.exchange("", smtp.Extensions{})
	if failed != nil || r.Code/100 != 2 {
		// The client's transaction is over with the backend's no.
		s.tx = nil
	}
	if failed != nil {
		return *failed
	}
	return reply(s.relayed(r))
}

// paramReply is the answer to a parameter moat does not take.
func paramReply(err error) string {
	var pe *smtp.ParamError
	if errors.As(err, &pe) {
		return pe.Reply
	}
	return smtp.ReplyMailSyntax
}

// rcpt answers RCPT: the limits, then the traps and the host's class, then
// the greylist until a retry passes; from then on the backend decides.
func (s *session) rcpt(arg string) answer {
	if s.tx == nil {
		return fault(smtp.ReplyNeedMail)
	}
	s.res.Rcpts++
	addr, params, err := smtp.ParseRcpt(arg)
	if err != nil {
		return fault(smtp.ReplyRcptSyntax)
	}
	rp, err := smtp.CheckRcptParams(params, s.offered(), s.tx.params.SMTPUTF8)
	if err != nil {
		return fault(paramReply(err))
	}
	if !smtp.ASCII(addr) && !s.tx.params.SMTPUTF8 {
		return fault(smtp.ReplyNeedUTF8)
	}
	rcpt, err := smtp.Normalize(addr)
	if err != nil {
		return fault(smtp.ReplyBadRcpt)
	}
	if s.tx.count++; s.tx.count > s.cfg.MaxRcpts {
		// Temporary: the client sends the rest in another transaction.
		return reply(smtp.ReplyTooManyRcpts)
	}
	judge := s.eng.Rcpt
	if s.passed {
		judge = s.eng.RcptPassed
	}
	rc := recipient{addr: addr, norm: rcpt, params: rp}
	d, err := judge(s.client, s.tx.sender, rcpt)
	switch d.Action {
	case classify.Trap, classify.Black:
		if s.enforce(blackVerdict(d), d.Source, d.Reason) {
			// The reply looks like any other recipient's; the rest of
			// the session is the tarpit's.
			look, told := smtp.ReplyGreylisted, ""
			if s.passed {
				look, told = smtp.ReplyRcptOK, addr
			}
			return s.black(err, look, d.Source, told)
		}
	case classify.Refuse:
		if s.enforce(Refused, d.Source, d.Reason) {
			s.note("not stored", err)
			return reply(replyRcptRefused)
		}
	case classify.Pass:
		if !s.passed {
			s.passed = true
			s.passReason = d.Reason
			s.verdict(Passed, d.Reason)
		}
		return s.backendRcpt(rc)
	default:
		if err != nil {
			// The store could not be asked: defer, never reject.
			if s.enforce(TempFail, store.SourceUnknown, err.Error()) {
				return reply(replyTempFail)
			}
		} else if s.enforce(Greylisted, store.SourceUnknown, d.Reason) {
			s.res.Deferred++
			return reply(smtp.ReplyGreylisted)
		}
	}
	// Observe mode: whatever the policy said, the backend decides.
	s.observeRelay(addr)
	if !s.res.HandedOff {
		s.happened(Passed, "observe mode")
	}
	return s.backendRcpt(rc)
}

// observeRelay applies, in observe mode, the rule the tarpit applies to
// the recipients of a host it holds: a relay attempt proves a bot
// (classify.RelayAttempt). The host is blacklisted for it as it would be
// there, and the session would have ended with the relay's reply.
func (s *session) observeRelay(addr string) {
	if !s.res.WouldVerdict.Black() || !classify.RelayAttempt(s.res.WouldSource, smtp.Domain(addr), s.cfg.Ours) {
		return
	}
	s.res.WouldSource = store.SourceRelay
	s.note("not stored", s.eng.Relay(s.client, addr))
}

// blackVerdict is the verdict of a decision that makes the session the
// tarpit's: a trap named in this command, or a host black by what another
// connection or the operator did.
func blackVerdict(d classify.Decision) Verdict {
	if d.Action == classify.Trap {
		return Trap
	}
	return Black
}

// black moves the session to the tarpit (its verdict is taken): its host
// is black now, by src. look is the reply the command gets, the one it
// would have got had nothing happened; told is the recipient the command
// named when look accepts it.
func (s *session) black(err error, look string, src store.Source, told string) answer {
	s.note("not stored", err)
	s.toTarpit(s.handOver(look, s.r.Pending(), src, told))
	return over
}

// handOver describes where the session stands, for the tarpit to go on
// from there (in a transaction when one is open); told is a recipient the
// client is told 250 for as it goes ("" for none).
func (s *session) handOver(look string, pending []byte, src store.Source, told string) tarpit.Start {
	st := tarpit.Start{Greeted: true, Helo: s.helo != "", InMail: s.tx != nil, Reply: look, Pending: pending, Source: src}
	if s.tx != nil {
		st.UTF8, st.Sender = s.tx.params.SMTPUTF8, s.tx.from
		for _, rc := range s.tx.rcpts {
			st.Recipients = append(st.Recipients, rc.addr)
		}
		if told != "" {
			st.Recipients = append(st.Recipients, told)
		}
		st.Rcpts = len(st.Recipients)
	}
	return st
}
