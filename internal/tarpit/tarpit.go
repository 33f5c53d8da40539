// Package tarpit holds black hosts in a fake open relay for as long as they
// care to stay.
//
// It owns the tarpit dialog (it answers like a Postfix that relays for
// anyone, in the grey dialog's words and limits, shared through
// internal/smtp: a bot that compares hears the same from a grey session and
// a held one, only slower), its last word on a message (by why the host is
// black: a proven bot is told its message was queued, a host listed for a
// weaker reason to try again later, so a mistake costs a delay, never a
// message), the stutter (every byte of every reply, banner included, goes
// out one byte per Stutter, and a message is read DataPace bytes per
// Stutter, so a bot waits for its last word as long as the message is long)
// and the bookkeeping of held connections. It must never deliver, store or forward anything a client
// sends: there is no code path from here to the backend, the tarpit never
// dials out, and DATA content is discarded as it arrives.
//
// The cost of a held connection is designed, not discovered, after OpenBSD
// spamd: one poll loop reads for every held connection, one scheduler writes
// every stuttered byte, and a connection is a small fixed struct with no
// goroutine, no buffer of its own and no timer; its kernel receive buffer is
// made as small as the kernel allows, so a message read slowly waits in the
// bot's send buffer rather than in ours. On Linux the loop is an epoll
// loop over the sockets' descriptors; elsewhere, and for connections that are
// not *net.TCPConn, a goroutine per connection reads while the same scheduler
// paces its writes.
package tarpit

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/classify"
	"moat/internal/smtp"
	"moat/internal/store"
)

// Defaults for the zero fields of Config.
const (
	DefaultStutter     = time.Second
	DefaultMaxConns    = 15000
	DefaultMaxBytes    = 10 << 20
	DefaultMaxDuration = 30 * time.Minute
	DefaultIdleTimeout = 5 * time.Minute
	DefaultDataPace    = 16
	// maxDataPace bounds DataPace: the scheduler reads a held message
	// into one buffer of that size.
	maxDataPace = 4096
)

// Config sets the tarpit's limits. Zero fields take the defaults above;
// Words or Hostname is required.
type Config struct {
	// Words are the replies, shared with the grey dialog so that both
	// speak alike; nil: the words of Hostname, with no greet delay and no
	// STARTTLS.
	Words    *smtp.Words
	Hostname string // used when Words is nil

	// The grey dialog's limits, applied alike: the session ends with
	// the same 421 at the same count. Defaults 10, 1000 and 100.
	MaxErrors   int
	MaxCommands int
	MaxRcpts    int

	Stutter     time.Duration // time between two bytes written to a client; default 1s
	MaxConns    int           // connections held at once; at the cap Hold refuses at once; default 15000
	MaxBytes    int64         // bytes a client may send before it is dropped; default 10 MiB
	MaxDuration time.Duration // how long a client may stay in all; default 30m
	IdleTimeout time.Duration // no complete line for this long while we owe nothing: drop; default 5m
	// DataPace is how many bytes of a message the tarpit reads per
	// Stutter; default 16, at most 4096. A bot that sends a message
	// waits for its end to be read before it hears "queued": at 16
	// bytes a second a 3,000-byte spam costs it three more minutes.
	DataPace int

	// Finals is the reply at the end of DATA by why the host is black.
	// A source it does not name gets Accept when it proves a bot
	// (classify.Proves) and Defer otherwise: a mistake costs a delay,
	// never a message.
	Finals map[store.Source]Final
	// Ours reports whether a recipient domain is one of ours; nil: moat
	// does not know its domains, and no recipient is a relay attempt.
	// It is called with the domain as the client wrote it.
	Ours func(domain string) bool

	finals [16]Final // Finals by store.Source (four bits), with the defaults; set by withDefaults
}

// Final is the tarpit's last word on a message: its reply at the end of
// DATA. Whatever it says, the message is dropped; only the client's idea
// of what happened to it differs.
type Final uint8

const (
	// Accept: "250 2.0.0 Ok: queued as …", the founding behaviour for a
	// proven bot, which believes it relayed.
	Accept Final = iota + 1
	// Defer: 451 4.7.1; a real MTA keeps the message and tries again, and
	// bounces it to its sender only if nobody releases the host.
	Defer
	// Reject: 554 5.7.1; a real MTA bounces the message to its sender at
	// once.
	Reject
)

var finalNames = [...]string{Accept: "accept", Defer: "defer", Reject: "reject"}

func (f Final) String() string {
	if int(f) < len(finalNames) && finalNames[f] != "" {
		return finalNames[f]
	}
	return "final(" + strconv.Itoa(int(f)) + ")"
}

// ParseFinal reads what String writes.
func ParseFinal(s string) (Final, error) {
	for f, n := range finalNames {
		if n != "" && n == s {
			return Final(f), nil
		}
	}
	return 0, fmt.Errorf("tarpit: final reply %q: want accept, defer or reject", s)
}

// The replies at the end of DATA for Defer and Reject: short, and the
// same words every time, so that the administrator of a sending server who
// finds one in a queue can search for them.
const (
	ReplyDeferred = "451 4.7.1 Client host deferred: listed here as a spam source, ask the postmaster to release it (moat-listed)\r\n"
	ReplyRefused  = "554 5.7.1 Client host refused: listed here as a spam source, ask the postmaster to release it (moat-listed)\r\n"
)

// Conn names one held connection to the events, from Held to Done: a
// comparable value that may key a map. It says nothing else.
type Conn struct{ s *session }

// Events are called from the tarpit's goroutines; they must not block (nil
// funcs are skipped). They are called with the connection's lock held: they
// may call Stats but not Hold or Close.
type Events struct {
	// Held reports a connection Hold took, with where it starts (a
	// session moved here mid-transaction brings its envelope so far).
	Held func(c Conn, client netip.Addr, st Start)
	// Mail reports the raw address inside MAIL FROM:<...> as sent.
	Mail func(c Conn, client netip.Addr, sender string)
	// Rcpt reports every RCPT a bot asks for: evidence for spamtrap mining.
	Rcpt func(c Conn, client netip.Addr, rcpt string)
	// Relay reports a recipient at a domain that is not ours (Config.Ours)
	// from a host black for a reason that does not prove a bot: the
	// attempt proves it, and from then on the session's messages get the
	// relay reply.
	Relay func(c Conn, client netip.Addr, rcpt string)
	// Told reports the end of a message and the reply it got.
	Told func(c Conn, client netip.Addr, f Final)
	// Done is called once per held connection when it ends. Connections
	// refused by Hold were never held and get no Done.
	Done func(c Conn, client netip.Addr, held time.Duration, bytesIn int64, msgs int)
}

// Start describes where in the SMTP dialog a connection enters the tarpit.
type Start struct {
	Greeted bool // the client already got a banner, or its first line (a session moved here from the grey dialog)
	Helo    bool // EHLO or HELO was answered, so MAIL may follow
	InMail  bool // a MAIL was already accepted, so RCPT/DATA may follow
	UTF8    bool // that MAIL declared SMTPUTF8
	// Rcpts are the recipients of the transaction the client was told
	// 250 for: a DATA needs one, as in the grey dialog. max_rcpts counts
	// on from there (deferred recipients before the move are not counted:
	// a bot may name that many more, which costs it time, not us).
	Rcpts   int
	Reply   string // a reply (with CRLF) to stutter out first, e.g. the answer to the RCPT that hit a trap; "" for none
	Pending []byte // client bytes already read but not yet answered; processed as if they had just arrived. Hold takes ownership.
	// Source is why the host is black: it picks the reply at the end of
	// DATA (Config.Finals).
	Source store.Source
	// Sender and Recipients are the transaction so far of a session
	// moved here (the recipients the client was told 250 for), for the
	// Held event only: Hold keeps neither.
	Sender     string
	Recipients []string
}

// Stats is a snapshot of the tarpit's counters.
type Stats struct {
	Held        int     // connections held now
	Max         int     // MaxConns in force: at it, Hold refuses
	Refused     uint64  // connections refused at the MaxConns cap (or after Close)
	HeldSeconds float64 // total time held, across all finished and current connections
	HeldNow     float64 // seconds the connections held now have spent so far
	Sessions    uint64  // connections ever held

	// Messages whose DATA ended here, by the reply they got: Dropped
	// were told 250 and thrown away, Deferred 4xx, Refused 5xx.
	Dropped, Deferred, Refused5xx uint64
}

// Tarpit holds connections. Create it with New; it is safe for concurrent use.
type Tarpit struct {
	lim atomic.Pointer[Config] // the limits in force, replaced whole by SetLimits
	ev  Events

	words *smtp.Words // shared with the grey dialog; never replaced

	base  time.Time // origin of the monotonic nanosecond clock used inside
	wheel wheel
	poll  *poller // nil where there is no epoll: every connection streams
	one   [1]byte // the scheduler's write buffer; only the scheduler touches it
	data  []byte  // the scheduler's read buffer for paced messages: maxDataPace bytes, DataPace used

	qidSeed uint64
	qidSeq  atomic.Uint64

	sweepBuf []*session // the scheduler's scratch copy of sessions

	mu       sync.Mutex
	closing  bool
	sessions []*session // held now; session.idx is the position here
	byFD     []*session // held fd-mode sessions by descriptor
	sumStart int64      // sum of start over sessions, for HeldSeconds
	finished int64      // nanoseconds held by connections that ended

	paced    atomic.Uint64 // reads of messages at DataPace, for tests and nothing else
	refused  atomic.Uint64
	total    atomic.Uint64
	messages [3]atomic.Uint64 // by the Final they were told, Accept first
	quit     chan struct{}
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
}

// New checks cfg, fills its defaults and starts the tarpit's loop and
// scheduler.
func New(cfg Config, ev Events) (*Tarpit, error) {
	t, err := newTarpit(cfg, ev)
	if err != nil {
		return nil, err
	}
	p, err := newPoller()
	if err != nil {
		return nil, fmt.Errorf("tarpit: %w", err)
	}
	t.poll = p
	if p != nil {
		t.wg.Add(1)
		go p.run(t)
	}
	t.wg.Add(1)
	go t.schedule()
	return t, nil
}

// newTarpit builds a Tarpit without starting anything, so dialog tests can
// drive sessions by hand.
func newTarpit(cfg Config, ev Events) (*Tarpit, error) {
	if cfg.Words == nil {
		if cfg.Hostname == "" {
			return nil, errors.New("tarpit: Hostname is empty: set the name the tarpit announces in its banner")
		}
		if strings.ContainsAny(cfg.Hostname, " \r\n\t") {
			return nil, fmt.Errorf("tarpit: Hostname %q: must be one word without spaces or line breaks", cfg.Hostname)
		}
		cfg.Words = smtp.NewWords(cfg.Hostname, false, false, 0)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Tarpit{
		ev:      ev,
		words:   cfg.Words,
		base:    time.Now(),
		qidSeed: randSeed(),
		quit:    make(chan struct{}),
		// As large as DataPace may be made by a reload.
		data: make([]byte, maxDataPace),
	}
	t.lim.Store(&cfg)
	t.wheel.init(t, int64(cfg.Stutter))
	return t, nil
}

// withDefaults checks the limits of cfg and fills in the zero ones.
func (cfg Config) withDefaults() (Config, error) {
	for _, l := range []struct {
		name string
		v    int64
	}{
		{"Stutter", int64(cfg.Stutter)},
		{"MaxConns", int64(cfg.MaxConns)},
		{"MaxBytes", cfg.MaxBytes},
		{"MaxDuration", int64(cfg.MaxDuration)},
		{"IdleTimeout", int64(cfg.IdleTimeout)},
		{"MaxErrors", int64(cfg.MaxErrors)},
		{"MaxCommands", int64(cfg.MaxCommands)},
		{"MaxRcpts", int64(cfg.MaxRcpts)},
		{"DataPace", int64(cfg.DataPace)},
	} {
		if l.v < 0 {
			return cfg, fmt.Errorf("tarpit: %s is negative (%d): use 0 for the default", l.name, l.v)
		}
	}
	if cfg.Stutter == 0 {
		cfg.Stutter = DefaultStutter
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.DataPace == 0 {
		cfg.DataPace = DefaultDataPace
	}
	if cfg.DataPace > maxDataPace {
		return cfg, fmt.Errorf("tarpit: DataPace %d: at most %d bytes per stutter", cfg.DataPace, maxDataPace)
	}
	cfg.MaxErrors = cmp.Or(cfg.MaxErrors, 10)
	cfg.MaxCommands = cmp.Or(cfg.MaxCommands, 1000)
	cfg.MaxRcpts = cmp.Or(cfg.MaxRcpts, 100)
	for src := range cfg.finals {
		f, ok := cfg.Finals[store.Source(src)]
		switch {
		case ok && f >= Accept && f <= Reject:
		case ok:
			return cfg, fmt.Errorf("tarpit: Finals[%s] = %d: want Accept, Defer or Reject", store.Source(src), f)
		case classify.Proves(store.Source(src)):
			f = Accept
		default:
			f = Defer
		}
		cfg.finals[src] = f
	}
	return cfg, nil
}

// SetLimits replaces the limits (Stutter, MaxConns, MaxBytes, MaxDuration,
// IdleTimeout, DataPace and the dialog's MaxErrors, MaxCommands, MaxRcpts),
// the final replies (Finals) and our domains (Ours) while connections are
// held: a reload. Nothing held is closed for it; each
// limit applies from its next check (a lower MaxConns refuses new
// connections until enough have left, a shorter MaxDuration ends the
// overdue ones at the next sweep). The words stay: cfg's Words and
// Hostname are not used.
func (t *Tarpit) SetLimits(cfg Config) error {
	cfg.Words, cfg.Hostname = t.words, ""
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	t.lim.Store(&cfg)
	t.wheel.setStep(int64(cfg.Stutter))
	return nil
}

// limits is the Config in force.
func (t *Tarpit) limits() *Config { return t.lim.Load() }

// sweepEvery is how often the limits are swept. Timeouts are checked by a
// sweep rather than a timer per connection: a timer costs memory per
// connection, a sweep a few microseconds per thousand connections. Its
// period bounds how late a limit bites.
func (t *Tarpit) sweepEvery() int64 {
	l := t.limits()
	every := int64(min(l.IdleTimeout, l.MaxDuration) / 8)
	return max(int64(5*time.Millisecond), min(every, int64(time.Second)))
}

// now is the tarpit's monotonic clock in nanoseconds since New. An int64
// rather than a time.Time keeps two timestamps per connection at 16 bytes.
func (t *Tarpit) now() int64 { return int64(time.Since(t.base)) }

// Hold takes ownership of conn (a *net.TCPConn in production; other net.Conn
// types use the goroutine path) and keeps it in the tarpit until the client
// leaves or a limit is hit. It returns false, and closes conn at once, when
// MaxConns connections are already held or the tarpit is closed.
func (t *Tarpit) Hold(conn net.Conn, client netip.Addr, st Start) bool {
	now := t.now()
	s := &session{
		t:      t,
		conn:   conn,
		client: client,
		fd:     -1,
		start:  now,
		idle:   now,
	}
	s.begin(st)
	if fd, ok := t.poll.fdOf(conn); ok {
		s.fd = fd
		shrinkReceive(fd)
	} else {
		s.tick = make(chan struct{}, 1)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if !t.register(s) {
		conn.Close()
		t.refused.Add(1)
		return false
	}
	if t.ev.Held != nil {
		t.ev.Held(Conn{s}, client, st)
	}
	if s.fd < 0 {
		t.wg.Add(1)
		go s.serve()
		return true
	}
	if err := t.poll.add(s.fd); err != nil {
		s.shutLocked()
		return true
	}
	s.settle(now)
	return true
}

// begin puts a new session where st says the dialog stands, owing its
// client what st says it is owed first.
func (s *session) begin(st Start) {
	s.rcpts = uint16(min(max(st.Rcpts, 0), math.MaxUint16))
	s.pending = st.Pending
	s.source = st.Source & 0x0f
	switch {
	case st.InMail && st.UTF8:
		s.stage = stageMailUTF8
	case st.InMail:
		s.stage = stageMail
	case st.Helo:
		s.stage = stageHelo
	}
	s.out = st.Reply
	if !st.Greeted {
		s.out = s.t.words.Banner() + st.Reply
	}
	if len(s.out) > math.MaxUint16 {
		// Replies are short; the write offset is 16 bits.
		s.out = s.out[:math.MaxUint16]
	}
}

// register adds s to the held set, unless the tarpit is full or closed.
func (t *Tarpit) register(s *session) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing || len(t.sessions) >= t.limits().MaxConns {
		return false
	}
	s.idx = int32(len(t.sessions))
	t.sessions = append(t.sessions, s)
	if s.fd >= 0 {
		for int(s.fd) >= len(t.byFD) {
			t.byFD = append(t.byFD, nil)
		}
		t.byFD[s.fd] = s
	}
	t.sumStart += s.start
	t.total.Add(1)
	return true
}

// unregister removes s from the held set and adds its time to the total.
func (t *Tarpit) unregister(s *session, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	last := len(t.sessions) - 1
	moved := t.sessions[last]
	t.sessions[s.idx] = moved
	moved.idx = s.idx
	t.sessions[last] = nil
	t.sessions = t.sessions[:last]
	if s.fd >= 0 && int(s.fd) < len(t.byFD) && t.byFD[s.fd] == s {
		t.byFD[s.fd] = nil
	}
	t.sumStart -= s.start
	t.finished += now - s.start
}

// lookup returns the fd-mode session holding fd, or nil.
func (t *Tarpit) lookup(fd int32) *session {
	t.mu.Lock()
	defer t.mu.Unlock()
	if fd < 0 || int(fd) >= len(t.byFD) {
		return nil
	}
	return t.byFD[fd]
}

// Stats returns a snapshot of the counters.
func (t *Tarpit) Stats() Stats {
	now := t.now()
	t.mu.Lock()
	held := len(t.sessions)
	current := int64(held)*now - t.sumStart
	ns := t.finished + current
	t.mu.Unlock()
	return Stats{
		Held:        held,
		Max:         t.limits().MaxConns,
		Refused:     t.refused.Load(),
		HeldSeconds: float64(ns) / float64(time.Second),
		HeldNow:     float64(current) / float64(time.Second),
		Sessions:    t.total.Load(),
		Dropped:     t.messages[0].Load(),
		Deferred:    t.messages[1].Load(),
		Refused5xx:  t.messages[2].Load(),
	}
}

// Close closes every held connection and stops the loop and the scheduler;
// it returns when all are closed. Hold refuses connections from then on.
func (t *Tarpit) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		t.closing = true
		held := append([]*session(nil), t.sessions...)
		t.mu.Unlock()
		for _, s := range held {
			s.mu.Lock()
			s.shutLocked()
			s.mu.Unlock()
		}
		close(t.quit)
		t.poll.wake()
		t.wg.Wait()
		t.closeErr = t.poll.close()
	})
	return t.closeErr
}

// sweep drops the sessions that overstayed MaxDuration or idled past
// IdleTimeout. It runs on the scheduler goroutine.
func (t *Tarpit) sweep(now int64) {
	t.mu.Lock()
	t.sweepBuf = append(t.sweepBuf[:0], t.sessions...)
	t.mu.Unlock()
	l := t.limits()
	maxDur, idle := int64(l.MaxDuration), int64(l.IdleTimeout)
	for _, s := range t.sweepBuf {
		s.mu.Lock()
		if now-s.start >= maxDur || (!s.owing() && now-s.idle >= idle) {
			s.shutLocked()
		}
		s.mu.Unlock()
	}
	clear(t.sweepBuf)
}
