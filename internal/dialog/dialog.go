// Package dialog speaks SMTP with grey hosts: the ones moat does not know.
//
// A grey session is one command loop from the banner to QUIT, whose every
// command goes through the same policy, in phases:
//
//   - greeting (greeting.go): the greet delay (a client that talks first is
//     an early talker and goes to the tarpit), the banner, EHLO and
//     STARTTLS;
//   - envelope (envelope.go): at every MAIL and RCPT the host's class is
//     read again, traps are checked and the limits applied; a RCPT is
//     answered 451 4.7.1 until the greylist says the retry qualifies;
//   - backend attached (backend.go): from the RCPT that passed on, the real
//     mail server takes part in the session. moat keeps parsing the client,
//     writes every command it sends to the backend itself from what it
//     parsed (never the client's line) and passes the backend's replies
//     back, turning every backend problem into a 4xx. When the backend
//     refuses or drops, the next command that needs it dials again and
//     replays EHLO, MAIL and the recipients already accepted;
//   - data (data.go): the strict reader (only CRLF.CRLF ends a message)
//     streams the message to the backend; the client's last reply is the
//     backend's, so moat never says 250 for a message the backend did not
//     take, and only then does the host become white.
//
// A session must never relay for a black host: whenever the host is black,
// by a trap named here, by another connection or by the operator, the
// session moves to the tarpit on the spot, which has no way to the
// backend, and the backend's side of the session is reset and closed with
// nothing delivered.
//
// Observe mode (Config.Observe) is a mode of the same loop, for a safe
// roll-out: every rule is applied and every piece of evidence recorded as
// in enforce mode (greet delay and early talk, DNS lists, traps, greylist
// triplets, the host's class at every command), but where enforce mode
// would defer, refuse or move the session to the tarpit, the session goes
// on and the backend takes part from the first RCPT, so no mail is
// deferred or dropped. Result says what enforce mode would have done. The
// strict DATA reader is the one exception: a message whose line ends or
// end of data a lax server would read differently is refused in both
// modes, since it cannot be handed on safely.
package dialog

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"moat/internal/classify"
	"moat/internal/smtp"
	"moat/internal/store"
	"moat/internal/tarpit"
)

// Config bounds and describes a grey session.
type Config struct {
	Words          *smtp.Words // the replies, shared with the tarpit
	GreetDelay     time.Duration
	MaxRcpts       int // recipients per transaction
	MaxCommands    int
	MaxErrors      int
	MaxMessageSize int64
	IdleTimeout    time.Duration // wait for a command, and for a write to the client
	DataTimeout    time.Duration // wait for each read of a message's data (RFC 5321 4.5.3.2.5)
	// MinDataRate is the bytes per second a message's data must average,
	// after a first DataTimeout of grace, so that a client trickling a
	// message cannot hold its backend connection for hours; 0: no floor.
	MinDataRate     int64
	DataDoneTimeout time.Duration // wait for the backend's reply after the end of data (4.5.3.2.6)
	BackendTimeout  time.Duration // wait for the backend to answer anything else
	TLS             *tls.Config   // nil: STARTTLS is not offered
	// BackendTLS is used for STARTTLS to the backend, when the client spoke
	// TLS with moat, the backend offers it and is not on this machine's
	// loopback; nil: never.
	BackendTLS *tls.Config
	Hooks      Hooks
	// Observe: mode = "observe". Nothing is deferred, refused or held
	// for policy; Result.Would says what enforce mode would have done.
	Observe bool
	// Ours says which domains are ours (traps.domains); nil: unknown. In
	// observe mode a host enforce mode would hold in the tarpit that
	// names another domain makes a relay attempt, as it would there.
	Ours func(domain string) bool
}

// Hooks let other parts of moat learn from sessions. Nil funcs are skipped;
// they must not block.
type Hooks struct {
	// BackendRcpt is called with the backend's reply to each RCPT of an
	// attached session (550 5.1.1 marks an unknown recipient).
	BackendRcpt func(client netip.Addr, rcpt string, r smtp.Reply)
	// Backend hears of every connection a session makes to the backend:
	// BackendAttached when it is ready for the transaction, or the
	// fault that ended or prevented it.
	Backend func(ev BackendEvent)
}

// BackendEvent is what happened to one of a session's backend connections.
type BackendEvent uint8

const (
	BackendAttached     BackendEvent = iota // connected and greeted: a hand-off
	BackendDialFailed                       // could not connect (refused, unreachable, timed out)
	BackendGreetRefused                     // connected, but its banner or EHLO was not a success
	BackendBroke                            // broke, or answered 421 or a protocol error, during the session
)

func (ev BackendEvent) String() string {
	return [...]string{"attached", "dial", "refused", "lost"}[ev]
}

// backendEvent tells the Backend hook of ev.
func (s *session) backendEvent(ev BackendEvent) {
	if s.cfg.Hooks.Backend != nil {
		s.cfg.Hooks.Backend(ev)
	}
}

// Tarpit is where a session goes when its host turns black mid-session.
type Tarpit interface {
	Hold(conn net.Conn, client netip.Addr, s tarpit.Start) bool
}

// Backend dials the real mail server on behalf of a client; clientTLS is
// the client's TLS with moat, nil for none.
type Backend interface {
	DialTLS(ctx context.Context, remote, local net.Addr, clientTLS *tls.ConnectionState) (net.Conn, error)
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
	// Verdict is the host's class at accept: grey, or in observe mode
	// black too (enforce mode would have held it in the tarpit).
	Verdict classify.Verdict
}

// Result says how a session ended, for the server's dispatch and the
// session's log line.
type Result struct {
	Verdict    Verdict
	Reason     string
	Helo       string
	Sender     string
	Rcpts      int   // RCPT commands seen
	Deferred   int   // RCPTs answered 451 by the greylist
	Messages   int   // messages the backend accepted
	BytesIn    int64 // from the client
	BytesOut   int64 // to the client
	TLS        bool
	Tarpitted  bool // the connection now belongs to the tarpit
	TarpitFull bool // the session was for the tarpit, which had no room: closed
	HandedOff  bool // a RCPT passed: the backend took part in the session

	// In observe mode, what enforce mode would have done: its verdict,
	// why, and for a black host the evidence behind it (see Would).
	WouldVerdict Verdict
	WouldReason  string
	WouldSource  store.Source
}

// session is one grey SMTP session.
type session struct {
	ctx    context.Context
	cfg    *Config
	words  *smtp.Words
	eng    *classify.Engine
	tp     Tarpit
	be     Backend
	client netip.Addr
	peer   Peer
	raw    net.Conn // the TCP connection
	conn   net.Conn // raw or its TLS layer
	in     *clientReader
	r      *smtp.Reader
	res    Result

	helo       string
	ehlo       bool
	offer      *smtp.Offer          // what this session's EHLO offered; nil after HELO
	tls        *tls.ConnectionState // the client's TLS, once STARTTLS is done
	tx         *transaction         // the mail transaction; nil outside one
	passed     bool                 // a RCPT passed the policy: enforce mode attaches the backend
	passReason string               // why it passed
	backend    *backendConn         // the connection to the backend, while there is one
	commands   int
	errors     int
}

// transaction is one mail transaction, as the client sent it and as the
// backend has it.
type transaction struct {
	from   string // the reverse-path as sent, between the brackets
	sender string // normalised, "" for <>
	params smtp.MailParams
	count  int         // well-formed RCPT commands in this transaction, for max_rcpts
	rcpts  []recipient // recipients the backend accepted; the client was told 250 for each
	// lost: a recipient the client was told 250 for could not be given to
	// the backend again after it dropped; the message can only be
	// deferred.
	lost        bool
	failedDials int // connections to the backend that failed in this transaction
}

// recipient is one accepted RCPT, to replay.
type recipient struct {
	addr   string // as sent, between the brackets
	norm   string // normalised
	params smtp.RcptParams
}

// answer is what a command handler decides: the reply to write, whether
// the command was a client error (counted against max_errors), and whether
// the session ends after it.
type answer struct {
	reply string
	fault bool
	end   bool
}

func reply(r string) answer { return answer{reply: r} }
func fault(r string) answer { return answer{reply: r, fault: true} }

// over ends the session with nothing more to write (the reply, if any, is
// out or belongs to the tarpit).
var over = answer{end: true}

// Serve runs a grey session on conn until it ends or moves to the tarpit.
// conn is closed on return unless Result.Tarpitted is set.
func Serve(ctx context.Context, conn net.Conn, peer Peer, cfg *Config, eng *classify.Engine, tp Tarpit, be Backend) (res Result) {
	s := &session{ctx: ctx, cfg: cfg, words: cfg.Words, eng: eng, tp: tp, be: be, client: peer.Client, peer: peer, raw: conn, conn: conn}
	s.in = &clientReader{c: conn}
	s.r = smtp.NewReader(s.in)
	defer func() {
		s.dropBackend()
		s.res.BytesIn = s.in.n
		if !s.res.Tarpitted {
			conn.Close()
		}
		// The result as it is now, the bytes read included.
		res = s.res
	}()
	if v := peer.Verdict; v.Class == store.Black {
		// Only in observe mode does a black host get here.
		s.enforce(Black, v.Source, v.Reason)
	}
	if s.greet() {
		s.loop()
	}
	return s.res
}

// loop is the session's one command loop.
func (s *session) loop() {
	for {
		line, ok := s.readCommand()
		if !ok {
			return
		}
		a := s.command(smtp.ParseCommand(line))
		if a.fault {
			s.errors++
			if s.errors > s.cfg.MaxErrors {
				s.write(s.words.TooManyErrors)
				s.verdict(TooManyErrors, "")
				return
			}
		}
		if a.reply != "" && !s.write(a.reply) {
			return
		}
		if a.end {
			return
		}
	}
}

// command dispatches one command to its verb's handler.
func (s *session) command(c smtp.Command) answer {
	switch c.Verb {
	case "EHLO", "HELO":
		return s.hello(c)
	case "STARTTLS":
		return s.startTLS(c.Arg)
	case "MAIL":
		return s.mail(c.Arg)
	case "RCPT":
		return s.rcpt(c.Arg)
	case "DATA":
		return s.data(c.Arg)
	case "RSET":
		s.reset()
		return reply(smtp.ReplyOK)
	case "NOOP":
		return reply(smtp.ReplyOK)
	case "QUIT":
		s.dropBackend()
		s.write(smtp.ReplyBye)
		s.verdict(Quit, "")
		return over
	case "VRFY":
		// Give nothing away about which addresses exist, before the
		// hand-off or after it.
		if c.Arg == "" {
			return fault(smtp.ReplyVrfySyntax)
		}
		return reply(smtp.ReplyVrfy)
	case "PROXY":
		return s.proxyLine()
	case "":
		return fault(smtp.ReplyBadSyntax)
	}
	// Everything else, before the hand-off and after it: AUTH, BDAT
	// (CHUNKING is not offered: a chunk would end where the DATA reader
	// never looks), EXPN, ETRN, TURN, XCLIENT (a backend that trusts
	// moat's address for it would take the client's word for its
	// identity), HELP, and noise.
	return fault(smtp.ReplyUnknown)
}

// readCommand reads the next command line within the idle timeout,
// answering over-long lines and enforcing the command limit. It returns
// false when the session is over.
func (s *session) readCommand() (string, bool) {
	for {
		s.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		line, err := s.r.ReadLine(smtp.MaxCommandLine)
		if err == smtp.ErrLineTooLong {
			s.errors++
			if s.errors > s.cfg.MaxErrors {
				s.write(s.words.TooManyErrors)
				s.verdict(TooManyErrors, "")
				return "", false
			}
			if !s.write(smtp.ReplyTooLong) {
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
			s.write(s.words.TooManyCommands)
			s.verdict(TooManyCommands, "")
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
		s.write(s.words.Timeout)
		s.verdict(Timeout, "")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		s.verdict(Closed, "")
	default:
		s.verdict(Error, err.Error())
	}
}

func (s *session) write(reply string) bool {
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
	n, err := io.WriteString(s.conn, reply)
	s.res.BytesOut += int64(n)
	return err == nil
}

// verdict records how the session went, keeping the most telling verdict
// (see Verdict); reason replaces the reason when the verdict is taken. In
// observe mode what happens happens in enforce mode too, and is what it
// would have done as well.
func (s *session) verdict(v Verdict, reason string) {
	if s.cfg.Observe {
		s.would(v, store.SourceUnknown, reason)
	}
	s.happened(v, reason)
}

// happened records what happened, whatever enforce mode would have done.
func (s *session) happened(v Verdict, reason string) {
	if v < s.res.Verdict {
		return
	}
	s.res.Verdict = v
	if reason != "" {
		s.res.Reason = reason
	}
}

// would records, in observe mode, what enforce mode would have done;
// src is the evidence a black verdict rests on.
func (s *session) would(v Verdict, src store.Source, reason string) {
	if v < s.res.WouldVerdict {
		return
	}
	s.res.WouldVerdict = v
	if src != store.SourceUnknown || v.Black() {
		s.res.WouldSource = src
	}
	if reason != "" {
		s.res.WouldReason = reason
	}
}

// enforce records a decision of moat's policy: to defer, refuse or hold
// in the tarpit. In enforce mode it is the session's verdict and enforce
// returns true: the caller carries it out. In observe mode it is what
// enforce mode would have done, and enforce returns false: the session
// goes on as if the policy had let it.
func (s *session) enforce(v Verdict, src store.Source, reason string) bool {
	if s.cfg.Observe {
		s.would(v, src, reason)
		return false
	}
	s.happened(v, reason)
	return true
}

// note adds to the reason of the verdict, e.g. an error of the store.
func (s *session) note(what string, err error) {
	if err != nil {
		s.res.Reason += " (" + what + ": " + err.Error() + ")"
	}
}

// reset ends the mail transaction on both sides (RSET, and the implicit
// reset of EHLO and HELO).
func (s *session) reset() {
	if b := s.backend; s.tx != nil && b != nil && b.inTx {
		b.inTx = false
		if r, err := b.cmd("RSET"); err != nil || r.Code != 250 {
			// The backend will not start afresh: a new connection will.
			s.dropBackend()
		}
	}
	s.tx = nil
}

// clientReader counts the bytes a client sent and, while idle is set,
// gives every read its own deadline: the block timeout of RFC 5321
// (4.5.3.2.5) for a message's data, which must not be a deadline for the
// whole message. With a rate, the data must also keep up with it on
// average: the read deadline is never later than idle after the data
// began plus the time the bytes read so far are worth at that rate, as
// Postfix's smtpd_min_data_rate extends a request's deadline.
type clientReader struct {
	c     net.Conn
	n     int64
	idle  time.Duration
	rate  int64     // bytes per second; 0: no floor
	start time.Time // when the data began, with rate
	from  int64     // n when the data began
	// early is what an early talker sent before the banner, read (and
	// counted) already: in observe mode it is read first.
	early []byte
}

// data starts the deadlines of a message's data; idle 0 ends them.
func (c *clientReader) data(idle time.Duration, rate int64) {
	c.idle, c.rate, c.start, c.from = idle, rate, time.Now(), c.n
}

func (c *clientReader) Read(p []byte) (int, error) {
	if len(c.early) > 0 {
		n := copy(p, c.early)
		c.early = c.early[n:]
		return n, nil
	}
	if c.idle > 0 {
		d := time.Now().Add(c.idle)
		if c.rate > 0 {
			// Whole seconds, then the rest: no overflow however
			// many bytes.
			b := c.n - c.from
			worth := time.Duration(b/c.rate)*time.Second + time.Duration(b%c.rate)*time.Second/time.Duration(c.rate)
			if floor := c.start.Add(c.idle + worth); floor.Before(d) {
				d = floor
			}
		}
		c.c.SetReadDeadline(d)
	}
	n, err := c.c.Read(p)
	c.n += int64(n)
	return n, err
}
