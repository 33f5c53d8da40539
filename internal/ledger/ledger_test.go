package ledger

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/store"
	"moat/internal/store/bolt"
)

func newLedger(t *testing.T, cfg Config) (*Ledger, store.Store, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Clock = clk
	l, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, st, clk
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"bob@example.org":               "bob@example.org",
		"\"john doe\"@example.org":      "\"john doe\"@example.org",
		"jörg@bücher.example":           "jörg@bücher.example",
		"a\r\nb\tc\x00d@x":              `a\u000d\u000ab\u0009c\u0000d@x`,
		"bad\xffutf8@x":                 `bad\xffutf8@x`,
		"evil\u202egro.elpmaxe@x":       `evil\u202egro.elpmaxe@x`,
		"nb\u00a0sp@x":                  `nb\u00a0sp@x`,
		strings.Repeat("a", 200) + "@x": strings.Repeat("a", MaxText) + "…",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// A connection's tab keeps its messages' envelopes, bounded, and Record
// adds the session to the host's record and the store's counters.
func TestRecordSession(t *testing.T) {
	l, st, _ := newLedger(t, Config{})
	client := netip.MustParseAddr("192.0.2.7")
	type conn struct{ n int }
	c := &conn{1}
	l.Rcpt(c, "ignored@example.org") // no transaction: nothing
	for i := range 4 {
		l.Mail(c, "bob@sender.example")
		for _, r := range []string{"a@example.org", "b@example.org", "c@example.org", "d@example.org", "e@example.org"} {
			l.Rcpt(c, r)
		}
		told := Deferred
		if i == 3 {
			told = Refused
		}
		l.Told(c, told)
	}
	other := &conn{2}
	l.Mail(other, "x@y.example") // a connection that never ends a message
	if err := l.Record(other, client); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(c, client); err != nil {
		t.Fatal(err)
	}
	if n := len(l.tabs.open); n != 0 {
		t.Errorf("%d tabs open after both connections ended", n)
	}
	r, ok, err := l.Of(client)
	if err != nil || !ok {
		t.Fatalf("no record: %v", err)
	}
	if r.Deferred != 3 || r.Refused != 1 || r.Dropped != 0 || len(r.Sessions) != 1 {
		t.Fatalf("record %+v, want 3 deferred, 1 refused, one session", r)
	}
	s := r.Sessions[0]
	if len(s.Messages) != MaxMessages || s.More != 1 || s.End.IsZero() {
		t.Errorf("session %+v, want %d messages and 1 more", s, MaxMessages)
	}
	m := s.Messages[0]
	if m.Told != "deferred" || m.Sender != "bob@sender.example" || strings.Join(m.Rcpts, ",") != "a@example.org,b@example.org,c@example.org" || m.More != 2 {
		t.Errorf("message %+v", m)
	}
	counters, err := st.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if counters[Counter(Deferred)] != 3 || counters[Counter(Refused)] != 1 || counters[Counter(Dropped)] != 0 {
		t.Errorf("counters %v", counters)
	}
}

// A session moved from the grey dialog brings its transaction.
func TestMoved(t *testing.T) {
	l, _, _ := newLedger(t, Config{})
	client := netip.MustParseAddr("192.0.2.8")
	l.Moved("c", "bob@sender.example", []string{"alice@example.org"})
	l.Rcpt("c", "carol@example.org")
	l.Told("c", Dropped)
	if err := l.Record("c", client); err != nil {
		t.Fatal(err)
	}
	r, _, _ := l.Of(client)
	m := r.Sessions[0].Messages[0]
	if !m.Before || m.Told != "dropped" || strings.Join(m.Rcpts, ",") != "alice@example.org,carol@example.org" {
		t.Errorf("message %+v", m)
	}
}

// A host keeps its latest sessions, all counted; the ledger keeps a
// bounded number of hosts, and forgets records after their TTL.
func TestBounds(t *testing.T) {
	l, st, clk := newLedger(t, Config{MaxHosts: 3, TTL: 24 * time.Hour})
	one := func(ip string) {
		t.Helper()
		key := new(int)
		l.Mail(key, "s@x.example")
		l.Rcpt(key, "r@y.example")
		l.Told(key, Dropped)
		if err := l.Record(key, netip.MustParseAddr(ip)); err != nil {
			t.Fatal(err)
		}
	}
	for range MaxSessions + 2 {
		one("192.0.2.1")
	}
	r, _, _ := l.Of(netip.MustParseAddr("192.0.2.1"))
	if len(r.Sessions) != MaxSessions || r.Dropped != MaxSessions+2 {
		t.Errorf("%d sessions kept, %d dropped counted; want %d and %d", len(r.Sessions), r.Dropped, MaxSessions, MaxSessions+2)
	}
	for _, ip := range []string{"192.0.2.2", "192.0.2.3"} {
		clk.Advance(time.Minute)
		one(ip)
	}
	clk.Advance(time.Minute)
	one("192.0.2.1") // refreshed: now the last to expire
	clk.Advance(time.Minute)
	one("192.0.2.4") // a fourth host: the record that expires first goes
	kept := func() []string {
		var keys []string
		st.Scan(kind, func(k string, _ []byte) bool { keys = append(keys, k); return true })
		return keys
	}
	if got := strings.Join(kept(), " "); got != "192.0.2.1 192.0.2.3 192.0.2.4" {
		t.Errorf("records kept: %s, want 192.0.2.2 forgotten", got)
	}
	// A new ledger over the same store knows the hosts and keeps the bound.
	l2, err := New(st, Config{MaxHosts: 3, TTL: 24 * time.Hour, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	l = l2
	one("192.0.2.5")
	if n := len(kept()); n != 3 {
		t.Errorf("%d records after a restart and a new host, want 3", n)
	}
	clk.Advance(25 * time.Hour)
	if n := len(kept()); n != 0 {
		t.Errorf("%d records after their TTL, want none", n)
	}
}
