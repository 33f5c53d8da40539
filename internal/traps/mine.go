package traps

// Mining: spam bots reveal the addresses they target. A bot in the tarpit
// hands its whole target list to what it thinks is an open relay; a bot
// that reaches the backend during a hand-off gets 550 5.1.1 for the
// addresses that do not exist; the backend's own log shows the same
// rejections for the hosts moat let through. An address that several
// unrelated hosts ask for, and that the backend never accepted, is a
// guessed or harvested address that no person uses: a trap candidate.
//
// Hosts are counted only when moat itself saw them: a tarpit RCPT, a
// backend reply during a hand-off, or a log line about a client that moat
// has a record of. A log line about a host moat never saw counts for
// nothing, so lines that are not what they seem cannot make a candidate.
//
// A candidate becomes a trap only after a fresh RCPT probe against the
// backend says "no such mailbox" (550 5.1.1): a trap that is a real
// mailbox would blacklist that person's correspondents, and a full mailbox
// or a policy refusal says nothing about whether the mailbox exists.

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/clock"
	"moat/internal/smtp"
	"moat/internal/store"
)

// Origin says where a piece of evidence comes from.
type Origin string

const (
	OriginTarpit  Origin = "tarpit"  // a black host asked the fake relay for it
	OriginBackend Origin = "backend" // the backend refused it as unknown during a hand-off
	OriginLog     Origin = "log"     // the backend's log shows it refused it as unknown
)

// Auto modes: what the miner does with a candidate.
const (
	AutoOff     = "off"     // do not mine
	AutoSuggest = "suggest" // list candidates for "moat traps promote"
	AutoPromote = "promote" // probe the backend and promote on its own
)

// Store record kinds.
const (
	kindCandidate   = "candidate"   // key: address; value: Evidence (JSON)
	kindLocalDomain = "localdomain" // key: domain learned from the backend; value: empty
)

const (
	// MaxHosts is how many distinct client hosts one address remembers.
	// traps.min_hosts cannot exceed it.
	MaxHosts = 16
	// evidenceTTL: evidence not refreshed for this long is forgotten; a
	// bot list that went quiet is no reason to make a trap.
	evidenceTTL = 90 * 24 * time.Hour
	// realTTL: how long an address the backend accepted is remembered as
	// a real mailbox (refreshed whenever it is accepted again).
	realTTL = 365 * 24 * time.Hour
	// reprobe: an inconclusive probe (4xx, backend down) is retried no
	// sooner than this.
	reprobe = time.Hour
	// defaultMaxRecords bounds the candidate records, so a dictionary
	// attack on a local domain cannot fill the store.
	defaultMaxRecords = 100000
	// maxLearned bounds the domains learnt from the backend's answers.
	maxLearned = 1000
)

// Evidence is what the miner knows of one recipient address.
type Evidence struct {
	Addr       string           `json:"addr"`
	Hosts      []netip.Addr     `json:"hosts"`   // distinct client hosts that targeted it, at most MaxHosts
	Sources    map[Origin]int64 `json:"sources"` // how often each origin reported it
	First      time.Time        `json:"first"`
	Last       time.Time        `json:"last"`
	Real       bool             `json:"real,omitzero"`        // the backend accepted it: never a trap
	Probed     time.Time        `json:"probed,omitzero"`      // last probe that did not promote
	ProbeReply string           `json:"probe_reply,omitzero"` // the backend's answer to it
}

func (e Evidence) String() string {
	var src []string
	for o, n := range e.Sources {
		src = append(src, fmt.Sprintf("%s:%d", o, n))
	}
	sort.Strings(src)
	return fmt.Sprintf("%d hosts, %s, first %s, last %s", len(e.Hosts), strings.Join(src, " "),
		e.First.UTC().Format(time.RFC3339), e.Last.UTC().Format(time.RFC3339))
}

// MinerConfig configures a Miner.
type MinerConfig struct {
	MinHosts int    // distinct hosts that make a candidate; default 3, at most MaxHosts
	Auto     string // AutoSuggest (default), AutoPromote or AutoOff
	// Domains are the domains moat protects. Empty: learn them from the
	// backend's answers (domains it accepted a recipient for or refused
	// one as unknown, during a hand-off or to a probe) and from the traps'
	// own domains; never from log text.
	Domains []string
	Probe   Probe       // checks a candidate against the backend; nil: nothing can be promoted
	Clock   clock.Clock // default clock.Real
	Log     *slog.Logger
	// Harvested is called (from Run's goroutine) when a bot in the tarpit
	// names a bait address: the harvester deserves the same as when the
	// address reaches a grey session.
	Harvested  func(h Harvest, client netip.Addr)
	MaxRecords int // default 100000
}

// Miner gathers evidence and turns candidates into traps.
type Miner struct {
	cfg   MinerConfig
	st    store.Store
	set   *Set
	clock clock.Clock
	log   *slog.Logger

	mu      sync.Mutex // serialises read-modify-write of one process's records
	learned *Domains
	fixed   map[string]bool // traps.domains; read-only after NewMiner
	records atomic.Int64    // approximate count of candidate records

	// Each cap is logged once when it is reached, and again only after
	// the count went below it.
	recordsFull atomic.Bool

	jobs    chan job
	dropped atomic.Int64
}

type job struct {
	promote string
	harvest *Harvest
	client  netip.Addr
}

// NewMiner returns a Miner that keeps its evidence in st and promotes into
// set.
func NewMiner(cfg MinerConfig, st store.Store, set *Set) (*Miner, error) {
	if cfg.MinHosts == 0 {
		cfg.MinHosts = 3
	}
	if cfg.MinHosts < 1 || cfg.MinHosts > MaxHosts {
		return nil, fmt.Errorf("traps: min_hosts %d: want 1..%d", cfg.MinHosts, MaxHosts)
	}
	switch cfg.Auto {
	case "":
		cfg.Auto = AutoSuggest
	case AutoOff, AutoSuggest, AutoPromote:
	default:
		return nil, fmt.Errorf("traps: auto %q: want suggest, promote or off", cfg.Auto)
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = defaultMaxRecords
	}
	m := &Miner{cfg: cfg, st: st, set: set, clock: cfg.Clock, log: cfg.Log,
		fixed: map[string]bool{}, jobs: make(chan job, 1024)}
	if m.clock == nil {
		m.clock = clock.Real{}
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	for _, d := range cfg.Domains {
		m.fixed[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	var err error
	m.learned, err = NewDomains(st, kindLocalDomain, realTTL, maxLearned)
	if err == nil {
		err = m.recount()
	}
	// A store not reachable yet (Redis starting after moat) is no
	// reason not to start: the learned domains come back at their next
	// sight, the count of records at the hourly recount.
	if err != nil && !errors.Is(err, store.ErrUnavailable) {
		return nil, err
	}
	return m, nil
}

func (m *Miner) recount() error {
	var n int64
	err := m.st.Scan(kindCandidate, func(string, []byte) bool { n++; return true })
	m.records.Store(n)
	if n < int64(m.cfg.MaxRecords) {
		m.recordsFull.Store(false)
	}
	return err
}

// newRecord reserves room for one more candidate record; false when the
// cap is reached.
func (m *Miner) newRecord() bool {
	if m.records.Load() >= int64(m.cfg.MaxRecords) {
		if !m.recordsFull.Swap(true) {
			m.log.Warn("traps: evidence records at their cap: new addresses are not recorded until old ones expire",
				"max_records", m.cfg.MaxRecords)
		}
		return false
	}
	m.records.Add(1)
	return true
}

func (m *Miner) isLocal(domain string) bool {
	if domain == "" {
		return false
	}
	if len(m.fixed) > 0 {
		return m.fixed[domain]
	}
	if m.learned.Has(domain) {
		return true
	}
	if cur := m.set.cur.Load(); cur != nil {
		for a := range *cur {
			if smtp.Domain(a) == domain {
				return true
			}
		}
	}
	return false
}

// learn remembers that the backend is final for domain: it accepted a
// recipient there, or refused one as unknown (which it can only know for
// its own domains). Only the backend's own answers teach a domain, never a
// log line. One write a day per domain.
func (m *Miner) learn(domain string, now time.Time) {
	if domain == "" || len(m.fixed) > 0 {
		return
	}
	if _, capped := m.learned.Learn(domain, now); capped {
		m.log.Warn("traps: learnt domains at their cap: set traps.domains to the domains moat protects", "max", maxLearned)
	}
}

func (m *Miner) get(addr string) (Evidence, bool, error) {
	b, ok, err := m.st.Get(kindCandidate, addr)
	if err != nil || !ok {
		return Evidence{}, false, err
	}
	var e Evidence
	if err := json.Unmarshal(b, &e); err != nil {
		// A damaged record is evidence lost, not a reason to stop.
		return Evidence{}, false, nil
	}
	return e, true, nil
}

func (m *Miner) put(e Evidence, ttl time.Duration) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return m.st.Put(kindCandidate, e.Addr, b, e.Last.Add(ttl))
}

// qualifies says whether e is a candidate now.
func (m *Miner) qualifies(e Evidence) bool {
	return !e.Real && len(e.Hosts) >= m.cfg.MinHosts && m.isLocal(smtp.Domain(e.Addr)) && !m.set.Is(e.Addr)
}

// Targeted records that client asked for rcpt and did not get it: a bot
// in the tarpit named it, or the backend refused it as unknown (during a
// hand-off, or in its log). A log line counts only for a client moat has a
// record of: moat saw it, so the line is about traffic that went through
// moat.
func (m *Miner) Targeted(client netip.Addr, rcpt string, o Origin) error {
	addr, err := smtp.Normalize(rcpt)
	if err != nil || !client.IsValid() {
		return nil
	}
	domain := smtp.Domain(addr)
	if domain == "" || m.set.Is(addr) {
		return nil
	}
	client = client.Unmap().WithZone("")
	now := m.clock.Now()
	switch o {
	case OriginBackend:
		m.learn(domain, now)
	case OriginLog:
		if !m.saw(client) {
			return nil
		}
	}
	// A bot asking the tarpit to relay to victim@foreign.example says
	// nothing about our addresses; keeping it would also let any bot
	// fill the store.
	if !m.isLocal(domain) {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok, err := m.get(addr)
	if err != nil {
		return err
	}
	if !ok {
		if !m.newRecord() {
			return nil
		}
		e = Evidence{Addr: addr, First: now, Sources: map[Origin]int64{}}
	}
	if e.Real {
		return nil
	}
	was := m.qualifies(e)
	if e.Sources == nil {
		e.Sources = map[Origin]int64{}
	}
	e.Sources[o]++
	e.Last = now
	if len(e.Hosts) < MaxHosts && !sameHost(e.Hosts, client) {
		e.Hosts = append(e.Hosts, client)
	}
	if err := m.put(e, evidenceTTL); err != nil {
		return err
	}
	// Only the crossing is queued: later evidence for a candidate whose
	// probe was not conclusive waits for the hourly sweep, so a busy bot
	// list does not become a probe per RCPT.
	if m.cfg.Auto == AutoPromote && !was && m.qualifies(e) {
		m.enqueue(job{promote: addr})
	}
	return nil
}

// saw reports whether moat has a record of client as a host of its own
// (grey, white or black): it connected to moat.
func (m *Miner) saw(client netip.Addr) bool {
	_, ok, err := m.st.Host(store.HostPrefix(client))
	return err == nil && ok
}

// sameHost reports whether a is one of the hosts in l. IPv6 hosts count by
// their /64, what one subscriber gets: one machine can use every address
// in it.
func sameHost(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a || a.Is6() && x.Is6() && prefix64(x) == prefix64(a) {
			return true
		}
	}
	return false
}

func prefix64(a netip.Addr) netip.Prefix {
	p, _ := a.Prefix(64)
	return p
}

// Accepted records that the backend accepted rcpt: it is a real mailbox
// and must never become a trap.
func (m *Miner) Accepted(rcpt string) error {
	addr, err := smtp.Normalize(rcpt)
	if err != nil || smtp.Domain(addr) == "" {
		return nil
	}
	now := m.clock.Now()
	m.learn(smtp.Domain(addr), now)
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok, err := m.get(addr)
	if err != nil {
		return err
	}
	// One write a day per real address, not one per message.
	if ok && e.Real && now.Sub(e.Last) < 24*time.Hour {
		return nil
	}
	if !ok {
		if !m.newRecord() {
			return nil
		}
		e = Evidence{Addr: addr, First: now}
	}
	e.Real, e.Last = true, now
	return m.put(e, realTTL)
}

// BackendRcpt is the grey dialog's hook: it sees the backend's reply to
// every RCPT of a handed-off session.
func (m *Miner) BackendRcpt(client netip.Addr, rcpt string, r smtp.Reply) {
	if m.cfg.Auto == AutoOff {
		return
	}
	switch {
	case r.Code/100 == 2:
		m.Accepted(rcpt)
	case replyUnknownUser(r):
		m.Targeted(client, rcpt, OriginBackend)
	}
}

// TarpitRcpt is the tarpit's Rcpt event. A bait address reports its
// harvester (also when mining is off); any other is evidence. It runs with the tarpit's
// connection lock held, so it only touches memory: the store's writes are
// batched, and anything slow goes to Run's goroutine.
func (m *Miner) TarpitRcpt(client netip.Addr, rcpt string) {
	addr, err := smtp.Normalize(rcpt)
	if err != nil {
		return
	}
	if h, ok := m.set.Harvested(addr); ok {
		if m.cfg.Harvested != nil {
			m.enqueue(job{harvest: &h, client: client})
		}
		return
	}
	if m.cfg.Auto != AutoOff {
		m.Targeted(client, addr, OriginTarpit)
	}
}

func (m *Miner) enqueue(j job) {
	select {
	case m.jobs <- j:
	default:
		// A flood of work is dropped, never waited for: the evidence
		// stays in the store and the hourly sweep finds it again.
		m.dropped.Add(1)
	}
}

// Evidence returns what the miner knows of addr.
func (m *Miner) Evidence(addr string) (Evidence, bool, error) {
	n, err := smtp.Normalize(addr)
	if err != nil {
		return Evidence{}, false, fmt.Errorf("traps: %q is not an address (want local@domain)", addr)
	}
	return m.get(n)
}

// Candidates returns the addresses that qualify as traps now, most hosts
// first.
func (m *Miner) Candidates() ([]Evidence, error) {
	var out []Evidence
	err := m.st.Scan(kindCandidate, func(_ string, b []byte) bool {
		var e Evidence
		if json.Unmarshal(b, &e) == nil && m.qualifies(e) {
			out = append(out, e)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if len(out[i].Hosts) != len(out[j].Hosts) {
			return len(out[i].Hosts) > len(out[j].Hosts)
		}
		return out[i].Addr < out[j].Addr
	})
	return out, err
}
