// Package ledger keeps what each verdict cost: for the sessions a black
// host spent in the tarpit, what its messages were told (250 and dropped,
// deferred with a 4xx, refused with a 5xx) and their envelopes, so that an
// operator sees what a listing did and can release a host whose mail was
// deferred before its sender gives up.
//
// Everything it keeps is bounded and expires: a sender writes the
// addresses, so each is cut and cleaned before it is kept (Clean), a
// session keeps a few messages and a message a few recipients, a host its
// latest sessions, and the ledger as a whole a fixed number of hosts, the
// records that expire first making room. Records live in the store (kind
// "ledger", keyed by address) and are read by "moat hosts show".
package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"moat/internal/clock"
	"moat/internal/store"
)

// Told is what a black host's message was told at the end of DATA.
type Told uint8

const (
	Dropped  Told = iota // 250, and the message was dropped
	Deferred             // 4xx: the client keeps it and tries again
	Refused              // 5xx: the client bounces it to its sender
	numTold
)

var toldNames = [numTold]string{"dropped", "deferred", "refused"}

func (t Told) String() string {
	if t < numTold {
		return toldNames[t]
	}
	return "told(" + strconv.Itoa(int(t)) + ")"
}

// Counter is the name of the store counter that adds up the messages told
// t, across every host.
func Counter(t Told) string { return "messages_" + t.String() }

// Bounds on what one record keeps; Config bounds the hosts.
const (
	MaxText     = 96 // bytes of an address kept (Clean)
	MaxRcpts    = 3  // recipients kept per message; the rest are counted
	MaxMessages = 3  // messages kept per session; the rest are counted
	MaxSessions = 8  // sessions kept per host, the latest
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxHosts = 10000
	DefaultTTL      = 30 * 24 * time.Hour
)

const kind = "ledger" // store record kind; key: the host's address

// Message is one message a black host sent to the tarpit.
type Message struct {
	Told   string   `json:"told"`             // "dropped", "deferred" or "refused"
	Sender string   `json:"sender"`           // the reverse-path as sent, cleaned; "" for <>
	Rcpts  []string `json:"rcpts"`            // the first MaxRcpts recipients, cleaned
	More   int      `json:"more,omitempty"`   // recipients beyond those
	Before bool     `json:"before,omitempty"` // its envelope began before the tarpit (a session moved there)
}

// Session is one connection of a black host that ended a message.
type Session struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Messages []Message `json:"messages"`       // the first MaxMessages
	More     int       `json:"more,omitempty"` // messages beyond those
}

// Counts are messages by what they were told, indexed by Told.
type Counts [numTold]int64

// Record is what the ledger keeps of one host.
type Record struct {
	Dropped  int64     `json:"dropped"` // its messages told each, all sessions counted
	Deferred int64     `json:"deferred"`
	Refused  int64     `json:"refused"`
	Sessions []Session `json:"sessions"` // the latest MaxSessions, oldest first
}

// Config bounds the ledger.
type Config struct {
	MaxHosts int           // hosts with a record; default 10000
	TTL      time.Duration // a record is forgotten this long after its last session; default 30 days
	Clock    clock.Clock   // default clock.Real
}

// Ledger records sessions into the store.
type Ledger struct {
	cfg Config
	st  store.Store

	mu    sync.Mutex           // serialises read-modify-write of records in this process
	hosts map[string]time.Time // hosts with a record, and when it expires: the bound in total

	tabs tabs
}

// New returns a Ledger over st; it reads which hosts have a record.
func New(st store.Store, cfg Config) (*Ledger, error) {
	if cfg.MaxHosts <= 0 {
		cfg.MaxHosts = DefaultMaxHosts
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	l := &Ledger{cfg: cfg, st: st, hosts: map[string]time.Time{}, tabs: tabs{open: map[any]*tab{}}}
	// Expiries are not in the records; a host found here expires, for
	// the bound, a TTL from now at the latest.
	exp := cfg.Clock.Now().Add(cfg.TTL)
	err := st.Scan(kind, func(k string, _ []byte) bool {
		l.hosts[k] = exp
		return true
	})
	if errors.Is(err, store.ErrUnavailable) {
		// A shared store down at start: moat starts, and the records
		// written meanwhile are counted; the older ones expire by
		// themselves.
		err = nil
	}
	return l, err
}

// Of returns what the ledger keeps of client.
func (l *Ledger) Of(client netip.Addr) (Record, bool, error) {
	return l.get(client.Unmap().String())
}

// Records calls fn for every host with a record until fn returns false.
// A damaged record is passed over.
func (l *Ledger) Records(fn func(client netip.Addr, r Record) bool) error {
	return l.st.Scan(kind, func(k string, b []byte) bool {
		a, err := netip.ParseAddr(k)
		var r Record
		if err != nil || json.Unmarshal(b, &r) != nil {
			return true
		}
		return fn(a, r)
	})
}

func (l *Ledger) get(key string) (Record, bool, error) {
	var r Record
	b, ok, err := l.st.Get(kind, key)
	if err != nil || !ok {
		return r, false, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, false, fmt.Errorf("ledger: record of %s: %w", key, err)
	}
	return r, true, nil
}

// Add records a finished session of client: its messages are counted in
// the host's record and in the store's counters, and the session is kept
// (the oldest of the host's making room). A session with no message
// costs nothing and is not recorded.
func (l *Ledger) Add(client netip.Addr, s Session, counts Counts) error {
	if counts == (Counts{}) {
		return nil
	}
	for t, n := range counts {
		if n > 0 {
			if err := l.st.Add(Counter(Told(t)), n); err != nil {
				return err
			}
		}
	}
	key := client.Unmap().String()
	now := l.cfg.Clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	r, _, err := l.get(key)
	if err != nil {
		// A damaged record is replaced, not a reason to lose this one.
		r = Record{}
	}
	r.Dropped += counts[Dropped]
	r.Deferred += counts[Deferred]
	r.Refused += counts[Refused]
	r.Sessions = append(r.Sessions, s)
	if len(r.Sessions) > MaxSessions {
		r.Sessions = r.Sessions[len(r.Sessions)-MaxSessions:]
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := l.room(key, now); err != nil {
		return err
	}
	exp := now.Add(l.cfg.TTL)
	l.hosts[key] = exp
	return l.st.Put(kind, key, b, exp)
}

// room makes room for key's record under MaxHosts: when a new host would
// go over it, the records that expired are dropped, then those that expire
// first are forgotten. Below the bound it costs nothing.
func (l *Ledger) room(key string, now time.Time) error {
	if _, ok := l.hosts[key]; ok || len(l.hosts) < l.cfg.MaxHosts {
		return nil
	}
	for k, exp := range l.hosts {
		if !exp.After(now) {
			delete(l.hosts, k) // the store forgot it already
		}
	}
	if len(l.hosts) < l.cfg.MaxHosts {
		return nil
	}
	type host struct {
		key string
		exp time.Time
	}
	all := make([]host, 0, len(l.hosts))
	for k, exp := range l.hosts {
		all = append(all, host{k, exp})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].exp.Before(all[j].exp) })
	for _, h := range all[:len(all)-l.cfg.MaxHosts+1] {
		if err := l.st.Delete(kind, h.key); err != nil && err != store.ErrNotFound {
			return err
		}
		delete(l.hosts, h.key)
	}
	return nil
}

// Clean is how an address a sender wrote is kept: cut to MaxText bytes
// (at a character, "…" marking the cut) and with everything that is not a
// visible character or a space written as an escape (\x.. for a byte
// that is not UTF-8, \u.... for a control or format character), so that
// it cannot break a log line, a table or a terminal.
func Clean(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if b.Len() >= MaxText {
			b.WriteString("…")
			break
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == ' ' || unicode.IsGraphic(r) && !unicode.Is(unicode.Zs, r):
			b.WriteString(s[i : i+n])
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}
