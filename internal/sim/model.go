// Package sim answers, in numbers, what a policy does to a traffic: how
// much of the bots' mail it stops before DATA, how long legitimate mail
// waits, whether any is lost, and how much bot time the tarpit takes.
//
// It drives the real decision engine (internal/classify over a real
// store, built by internal/daemon from a moat configuration) on a fake
// clock, so a week of traffic takes seconds. It is not a second
// implementation of the policy: every decision comes from the engine.
// What it adds is the part of a session that lives on the wire — the greet
// delay, the order of MAIL, RCPT, DATA and the backend's 250 — which it
// plays by calling the engine's methods in the order the grey dialog does
// (session.go), and the senders, which it plays from a traffic model
// (model.go) or from a real mail log (maillog.go).
//
// It never opens a socket and never asks DNS: SPF records of the model's
// senders are answered from memory.
package sim

import (
	_ "embed"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"moat/internal/config"
)

//go:embed model.toml
var defaultModel []byte

// Model is a traffic: who sends to the site, how much, and how each kind
// of sender behaves when it is deferred. docs/evaluate.md documents the
// default and its sources.
type Model struct {
	Days     int             `toml:"days"`
	Start    string          `toml:"start"`  // RFC 3339
	Warmup   config.Duration `toml:"warmup"` // traffic before Start, not counted
	LogRetry string          `toml:"log_retry"`
	Site     Site            `toml:"site"`
	Filter   Filter          `toml:"filter"`
	Legit    []Sender        `toml:"legit"`
	Bots     []Bot           `toml:"bots"`

	start time.Time
}

// Site is the receiving side.
type Site struct {
	Domain    string   `toml:"domain"`
	Mailboxes int      `toml:"mailboxes"`
	Traps     []string `toml:"traps"` // published addresses no person uses
}

// Filter is the backend's content filter, as seen by a policy that follows
// its log (reputation.follow).
type Filter struct {
	SpamCaught    float64 `toml:"spam_caught"`
	HamMarkedSpam float64 `toml:"ham_marked_spam"`
}

// Schedule is how a sender behaves after a 4xx.
type Schedule struct {
	Retry       string          `toml:"retry"`        // an Exim retry rule; "": never retries
	FirstRetry  config.Duration `toml:"first_retry"`  // replaces the rule's first interval
	MaxInterval config.Duration `toml:"max_interval"` // caps every interval
	QueueRun    config.Duration `toml:"queue_run"`    // a retry waits for the next queue run
	RetryFrom   string          `toml:"retry_from"`   // same, pool or new-network

	rule []phase
}

// Pool is where a kind of sender sends from.
type Pool struct {
	Hosts    int `toml:"hosts"`    // addresses
	Networks int `toml:"networks"` // the /24s they are spread over
}

// Sender is a kind of legitimate MTA.
type Sender struct {
	Name           string  `toml:"name"`
	MessagesPerDay float64 `toml:"messages_per_day"`
	Senders        int     `toml:"senders"` // distinct envelope senders
	SPF            bool    `toml:"spf"`     // its domain's SPF record authorises the pool
	Rcpts          int     `toml:"rcpts"`   // at most this many recipients a message
	Pool
	Schedule
}

// Bot is a kind of spam sender.
type Bot struct {
	Name           string          `toml:"name"`
	MessagesPerDay float64         `toml:"messages_per_day"`
	Rcpts          int             `toml:"rcpts"`
	TrapShare      float64         `toml:"trap_share"`    // of its recipients, traps
	UnknownShare   float64         `toml:"unknown_share"` // of its recipients, addresses that do not exist
	EarlyTalk      bool            `toml:"early_talk"`    // speaks before the banner
	Patience       config.Duration `toml:"patience"`      // leaves the tarpit after this; 0: stays as long as it is kept
	MessageSize    int             `toml:"message_size"`  // bytes of its message
	Pool
	Schedule
}

// DefaultModel returns the embedded model.
func DefaultModel() *Model {
	m, err := ParseModel(defaultModel)
	if err != nil {
		panic("sim: the embedded model is broken: " + err.Error())
	}
	return m
}

// LoadModel reads a model file; "" is the default model.
func LoadModel(path string) (*Model, error) {
	if path == "" {
		return DefaultModel(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	m, err := ParseModel(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ParseModel reads and checks a model.
func ParseModel(text []byte) (*Model, error) {
	var m Model
	if err := config.Decode(text, &m, "model", "docs/evaluate.md"); err != nil {
		return nil, err
	}
	return &m, m.check()
}

// Span is the simulated time, warm-up included: from the first message to
// the last first attempt.
func (m *Model) Span() (from, start, end time.Time) {
	return m.start.Add(-m.Warmup.Duration), m.start, m.start.Add(time.Duration(m.Days) * 24 * time.Hour)
}

func (m *Model) check() error {
	if m.Days < 1 || m.Days > 365 {
		return fmt.Errorf("model: days: %d: want 1..365", m.Days)
	}
	t, err := time.Parse(time.RFC3339, m.Start)
	if err != nil {
		return fmt.Errorf("model: start: %q: want an RFC 3339 time like \"2026-03-02T00:00:00Z\"", m.Start)
	}
	m.start = t.UTC()
	if m.Site.Domain == "" || strings.ContainsAny(m.Site.Domain, "@ <>") {
		return fmt.Errorf("model: site.domain: %q: want a domain name", m.Site.Domain)
	}
	if m.Site.Mailboxes < 1 {
		return fmt.Errorf("model: site.mailboxes: %d: want at least 1", m.Site.Mailboxes)
	}
	for i, a := range m.Site.Traps {
		if !strings.HasSuffix(a, "@"+m.Site.Domain) {
			return fmt.Errorf("model: site.traps[%d]: %q: a trap must be an address at site.domain", i, a)
		}
	}
	if err := share("filter.spam_caught", m.Filter.SpamCaught); err != nil {
		return err
	}
	if err := share("filter.ham_marked_spam", m.Filter.HamMarkedSpam); err != nil {
		return err
	}
	names := map[string]bool{}
	for i := range m.Legit {
		s := &m.Legit[i]
		key := fmt.Sprintf("legit[%d]", i)
		if err := checkKind(names, key, s.Name, s.Pool, &s.Schedule); err != nil {
			return err
		}
		if s.MessagesPerDay < 0 || s.Senders < 1 || s.Rcpts < 1 {
			return fmt.Errorf("model: %s (%s): messages_per_day must be >= 0, senders and rcpts >= 1", key, s.Name)
		}
		if s.Retry == "" {
			return fmt.Errorf("model: %s.retry (%s): a legitimate sender retries: give its retry rule", key, s.Name)
		}
	}
	for i := range m.Bots {
		b := &m.Bots[i]
		key := fmt.Sprintf("bots[%d]", i)
		if err := checkKind(names, key, b.Name, b.Pool, &b.Schedule); err != nil {
			return err
		}
		if b.MessagesPerDay < 0 || b.Rcpts < 1 {
			return fmt.Errorf("model: %s (%s): messages_per_day must be >= 0 and rcpts >= 1", key, b.Name)
		}
		if err := share(key+".trap_share", b.TrapShare); err != nil {
			return err
		}
		if err := share(key+".unknown_share", b.UnknownShare); err != nil {
			return err
		}
		if b.MessageSize < 0 || b.MessageSize > 10<<20 {
			return fmt.Errorf("model: %s.message_size (%s): %d: want 0 to 10485760 bytes", key, b.Name, b.MessageSize)
		}
		if b.TrapShare+b.UnknownShare > 1 {
			return fmt.Errorf("model: %s (%s): trap_share + unknown_share is above 1", key, b.Name)
		}
		if b.TrapShare > 0 && len(m.Site.Traps) == 0 {
			return fmt.Errorf("model: %s.trap_share (%s): site.traps is empty", key, b.Name)
		}
	}
	if len(m.Legit)+len(m.Bots) == 0 {
		return fmt.Errorf("model: no [[legit]] and no [[bots]]: nothing sends")
	}
	if m.LogRetry != "" {
		if _, ok := m.legit(m.LogRetry); !ok {
			return fmt.Errorf("model: log_retry: %q: no [[legit]] of that name", m.LogRetry)
		}
	}
	return nil
}

// botMessageSize is the size of the bots' messages, weighted by how many
// each kind sends: the message of the single-message session the report
// prices.
func (m *Model) botMessageSize() int {
	var sum, n float64
	for _, b := range m.Bots {
		sum += float64(b.MessageSize) * b.MessagesPerDay
		n += b.MessagesPerDay
	}
	if n == 0 {
		return 0
	}
	return int(sum/n + 0.5)
}

// legit returns the legitimate sender of that name.
func (m *Model) legit(name string) (*Sender, bool) {
	for i := range m.Legit {
		if m.Legit[i].Name == name {
			return &m.Legit[i], true
		}
	}
	return nil, false
}

// checkKind checks what legitimate senders and bots have alike: a name of
// their own, a pool, a schedule.
func checkKind(names map[string]bool, key, name string, p Pool, s *Schedule) error {
	if err := named(names, key, name); err != nil {
		return err
	}
	if err := p.check(key); err != nil {
		return err
	}
	return s.check(key)
}

func named(seen map[string]bool, key, name string) error {
	if name == "" || strings.ContainsAny(name, " \t\"") {
		return fmt.Errorf("model: %s.name: %q: want a word", key, name)
	}
	if seen[name] {
		return fmt.Errorf("model: %s.name: %q is used twice", key, name)
	}
	seen[name] = true
	return nil
}

func share(key string, v float64) error {
	if v < 0 || v > 1 {
		return fmt.Errorf("model: %s: %g: want a share between 0 and 1", key, v)
	}
	return nil
}

// maxNetworks bounds a pool: /24s are numbered in a 16-bit space per kind
// of sender (see addr).
const maxNetworks = 1 << 16

func (p Pool) check(key string) error {
	if p.Networks < 1 || p.Hosts < p.Networks || p.Networks > maxNetworks || p.Hosts > 250*p.Networks {
		return fmt.Errorf("model: %s: hosts %d over networks %d: want 1 <= networks <= hosts <= 250*networks, networks <= %d",
			key, p.Hosts, p.Networks, maxNetworks)
	}
	return nil
}

// phase is one part of an Exim retry rule: until the message is Until
// old, retry every Every, or (geometric) starting at Every and multiplying
// it by Factor each time.
type phase struct {
	Until  time.Duration
	Every  time.Duration
	Factor float64 // 0: fixed
}

func (s *Schedule) check(key string) error {
	switch s.RetryFrom {
	case "", "same", "pool", "new-network":
	default:
		return fmt.Errorf("model: %s.retry_from: %q: want \"same\", \"pool\" or \"new-network\"", key, s.RetryFrom)
	}
	if s.Retry == "" {
		return nil
	}
	rule, err := parseRule(s.Retry)
	if err != nil {
		return fmt.Errorf("model: %s.retry: %q: %v (write e.g. \"F,2h,15m; G,16h,1h,1.5\")", key, s.Retry, err)
	}
	s.rule = rule
	return nil
}

// parseRule reads an Exim retry rule: phases "F,<until>,<every>" and
// "G,<until>,<first>,<factor>", separated by semicolons, with cut-offs
// that grow.
func parseRule(text string) ([]phase, error) {
	var rule []phase
	for _, part := range strings.Split(text, ";") {
		f := strings.Split(strings.TrimSpace(part), ",")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		var p phase
		var err error
		switch {
		case len(f) == 3 && f[0] == "F":
		case len(f) == 4 && f[0] == "G":
			if p.Factor, err = strconv.ParseFloat(f[3], 64); err != nil || p.Factor < 1 || p.Factor > 10 {
				return nil, fmt.Errorf("factor %q: want a number from 1 to 10", f[3])
			}
		default:
			return nil, fmt.Errorf("%q: want F,until,every or G,until,first,factor", part)
		}
		if p.Until, err = parseDuration(f[1]); err != nil {
			return nil, err
		}
		if p.Every, err = parseDuration(f[2]); err != nil {
			return nil, err
		}
		if p.Every < time.Second {
			return nil, fmt.Errorf("%q: the interval must be at least 1s", part)
		}
		if len(rule) > 0 && p.Until <= rule[len(rule)-1].Until {
			return nil, fmt.Errorf("%q: cut-offs must grow", part)
		}
		rule = append(rule, p)
	}
	return rule, nil
}

func parseDuration(s string) (time.Duration, error) {
	var d config.Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		return 0, err
	}
	return d.Duration, nil
}

// next returns when a message first tried at first and last tried at
// last is tried again, given it has been retried n times already; ok is
// false once the sender gives up. phase is the offset of the sender's
// queue runs.
func (s *Schedule) next(first, last time.Time, n int, phaseOff time.Duration) (time.Time, bool) {
	if len(s.rule) == 0 {
		return time.Time{}, false
	}
	age := last.Sub(first)
	var p phase
	found := false
	for _, q := range s.rule {
		if age < q.Until {
			p, found = q, true
			break
		}
	}
	if !found {
		return time.Time{}, false
	}
	d := p.Every
	if p.Factor > 0 {
		// Geometric phases grow from the start of the phase: count the
		// retries already made in it by the age reached.
		start := time.Duration(0)
		for _, q := range s.rule {
			if q.Until >= p.Until {
				break
			}
			start = q.Until
		}
		for t := start + d; t <= age && d < p.Until; t += d {
			d = time.Duration(float64(d) * p.Factor)
		}
	}
	if n == 0 && s.FirstRetry.Duration > 0 {
		d = s.FirstRetry.Duration
	}
	if s.MaxInterval.Duration > 0 && d > s.MaxInterval.Duration {
		d = s.MaxInterval.Duration
	}
	due := last.Add(d)
	if q := s.QueueRun.Duration; q > 0 {
		// The first queue run at or after due.
		since := due.Sub(first.Add(phaseOff))
		due = first.Add(phaseOff).Add((since + q - 1) / q * q)
	}
	if due.Sub(first) >= s.rule[len(s.rule)-1].Until {
		return time.Time{}, false
	}
	return due, true
}
