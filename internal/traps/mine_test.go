package traps

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/smtp"
)

type sighting struct {
	client string
	rcpt   string
	origin Origin
}

// TestMinerCandidates drives the miner with evidence as the tarpit, the
// hand-off and the log would report it, and checks which addresses
// become candidates.
func TestMinerCandidates(t *testing.T) {
	tests := []struct {
		name     string
		domains  []string // traps.domains
		traps    []string // configured traps
		minHosts int
		accepted []string // the backend said 250 to these
		seen     []sighting
		want     []string
	}{
		{
			name:  "three hosts in the tarpit make a candidate",
			traps: []string{"trap@example.org"},
			seen: []sighting{
				{"192.0.2.1", "sales@example.org", OriginTarpit},
				{"192.0.2.2", "Sales@Example.ORG", OriginTarpit},
				{"192.0.2.3", "sales@example.org.", OriginTarpit},
				{"192.0.2.1", "info@example.org", OriginTarpit},
				{"192.0.2.2", "info@example.org", OriginTarpit},
			},
			want: []string{"sales@example.org"},
		},
		{
			name:  "one host asking many times is one host",
			traps: []string{"trap@example.org"},
			seen: []sighting{
				{"192.0.2.1", "sales@example.org", OriginTarpit},
				{"192.0.2.1", "sales@example.org", OriginTarpit},
				{"192.0.2.1", "sales@example.org", OriginTarpit},
				{"192.0.2.2", "sales@example.org", OriginTarpit},
			},
		},
		{
			name:     "an address the backend accepted is never a candidate",
			traps:    []string{"trap@example.org"},
			accepted: []string{"bob@example.org"},
			seen: []sighting{
				{"192.0.2.1", "bob@example.org", OriginTarpit},
				{"192.0.2.2", "bob@example.org", OriginTarpit},
				{"192.0.2.3", "bob@example.org", OriginBackend},
				{"192.0.2.4", "bob@example.org", OriginLog},
			},
		},
		{
			name:  "relay targets in foreign domains are not ours to trap",
			traps: []string{"trap@example.org"},
			seen: []sighting{
				{"192.0.2.1", "victim@foreign.example", OriginTarpit},
				{"192.0.2.2", "victim@foreign.example", OriginTarpit},
				{"192.0.2.3", "victim@foreign.example", OriginTarpit},
			},
		},
		{
			name: "with nothing known, tarpit evidence has no local domain",
			seen: []sighting{
				{"192.0.2.1", "sales@example.org", OriginTarpit},
				{"192.0.2.2", "sales@example.org", OriginTarpit},
				{"192.0.2.3", "sales@example.org", OriginTarpit},
			},
		},
		{
			name:     "a domain is learned from an accepted recipient",
			accepted: []string{"bob@example.org"},
			seen: []sighting{
				{"192.0.2.1", "sales@example.org", OriginTarpit},
				{"192.0.2.2", "sales@example.org", OriginTarpit},
				{"192.0.2.3", "sales@example.org", OriginTarpit},
			},
			want: []string{"sales@example.org"},
		},
		{
			name: "the backend's own unknown-user answers count, and teach the domain",
			seen: []sighting{
				{"192.0.2.1", "sales@example.org", OriginBackend},
				{"2001:db8::1", "sales@example.org", OriginLog},
				{"192.0.2.3", "sales@example.org", OriginTarpit},
			},
			want: []string{"sales@example.org"},
		},
		{
			name:    "traps.domains restricts candidates to those domains",
			domains: []string{"example.net"},
			seen: []sighting{
				{"192.0.2.1", "sales@example.org", OriginLog},
				{"192.0.2.2", "sales@example.org", OriginLog},
				{"192.0.2.3", "sales@example.org", OriginLog},
				{"192.0.2.1", "sales@example.net", OriginTarpit},
				{"192.0.2.2", "sales@example.net", OriginTarpit},
				{"192.0.2.3", "sales@example.net", OriginTarpit},
			},
			want: []string{"sales@example.net"},
		},
		{
			name:     "min_hosts",
			traps:    []string{"trap@example.org"},
			minHosts: 2,
			seen: []sighting{
				{"192.0.2.1", "sales@example.org", OriginTarpit},
				{"192.0.2.2", "sales@example.org", OriginTarpit},
			},
			want: []string{"sales@example.org"},
		},
		{
			name:  "a trap is not a candidate",
			traps: []string{"trap@example.org"},
			seen: []sighting{
				{"192.0.2.1", "trap@example.org", OriginTarpit},
				{"192.0.2.2", "trap@example.org", OriginTarpit},
				{"192.0.2.3", "trap@example.org", OriginTarpit},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clock.NewFake(t0)
			st := newStore(t, c)
			set := newTrapSet(t, st, tt.traps...)
			m, err := NewMiner(MinerConfig{MinHosts: tt.minHosts, Domains: tt.domains, Clock: c}, st, set)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range tt.accepted {
				m.BackendRcpt(ip("192.0.2.99"), a, smtp.Reply{Code: 250, Lines: []string{"2.1.5 Ok"}})
			}
			for _, s := range tt.seen {
				c.Advance(time.Minute)
				switch s.origin {
				case OriginTarpit:
					m.TarpitRcpt(ip(s.client), s.rcpt)
				case OriginBackend:
					m.BackendRcpt(ip(s.client), s.rcpt, smtp.Reply{Code: 550, Lines: []string{"5.1.1 <x>: Recipient address rejected: User unknown"}})
				default:
					if err := m.Targeted(ip(s.client), s.rcpt, s.origin); err != nil {
						t.Fatal(err)
					}
				}
			}
			cs, err := m.Candidates()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range cs {
				got = append(got, e.Addr)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("candidates = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMinerEvidence(t *testing.T) {
	c := clock.NewFake(t0)
	st := newStore(t, c)
	m, err := NewMiner(MinerConfig{Domains: []string{"example.org"}, Clock: c}, st, newTrapSet(t, st))
	if err != nil {
		t.Fatal(err)
	}
	m.TarpitRcpt(ip("192.0.2.1"), "sales@example.org")
	c.Advance(time.Hour)
	m.BackendRcpt(ip("::ffff:192.0.2.2"), "sales@example.org", smtp.Reply{Code: 550, Lines: []string{"5.1.1 unknown"}})
	// A 4xx from the backend says nothing about the mailbox.
	m.BackendRcpt(ip("192.0.2.3"), "sales@example.org", smtp.Reply{Code: 450, Lines: []string{"4.1.1 unverified"}})
	for i := 0; i < 2*MaxHosts; i++ {
		m.Targeted(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "sales@example.org", OriginLog)
	}
	e, ok, err := m.Evidence("sales@example.org")
	if err != nil || !ok {
		t.Fatalf("Evidence: %v, %v", ok, err)
	}
	if len(e.Hosts) != MaxHosts {
		t.Errorf("%d hosts kept, want the bound %d", len(e.Hosts), MaxHosts)
	}
	if e.Hosts[1] != ip("192.0.2.2") {
		t.Errorf("second host %s, want 192.0.2.2 unmapped", e.Hosts[1])
	}
	if e.Sources[OriginTarpit] != 1 || e.Sources[OriginBackend] != 1 || e.Sources[OriginLog] != 2*MaxHosts {
		t.Errorf("sources = %v", e.Sources)
	}
	if !e.First.Equal(t0) || !e.Last.Equal(t0.Add(time.Hour)) {
		t.Errorf("first %s last %s", e.First, e.Last)
	}
}

func TestMinerOffIgnoresHooks(t *testing.T) {
	c := clock.NewFake(t0)
	st := newStore(t, c)
	m, err := NewMiner(MinerConfig{Auto: AutoOff, MinHosts: 1, Domains: []string{"example.org"}, Clock: c}, st, newTrapSet(t, st))
	if err != nil {
		t.Fatal(err)
	}
	m.TarpitRcpt(ip("192.0.2.1"), "sales@example.org")
	m.BackendRcpt(ip("192.0.2.1"), "info@example.org", smtp.Reply{Code: 550, Lines: []string{"5.1.1 unknown"}})
	if cs, _ := m.Candidates(); len(cs) != 0 {
		t.Fatalf("mining is off, but candidates are %v", cs)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestPromoteProbe: before promotion the backend is asked. A real mailbox
// is refused (and remembered as real), an unknown one becomes a trap, a
// temporary answer leaves the candidate as it was.
func TestPromoteProbe(t *testing.T) {
	srv := startMailServer(t, "bob@example.org")
	c := clock.NewFake(t0)
	st := newStore(t, c)
	set := newTrapSet(t, st)
	m, err := NewMiner(MinerConfig{Domains: []string{"example.org"}, Clock: c, Probe: srv.prober(), Log: quietLog()}, st, set)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"bob@example.org", "sales@example.org", "busy@example.org"} {
		for _, h := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
			m.TarpitRcpt(ip(h), a)
		}
	}
	if cs, _ := m.Candidates(); len(cs) != 3 {
		t.Fatalf("%d candidates before the probes, want 3: %v", len(cs), cs)
	}
	ctx := context.Background()

	p, err := m.Promote(ctx, "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if p.Promoted || set.Is("bob@example.org") {
		t.Fatalf("a real mailbox was promoted: %+v", p)
	}
	if !strings.Contains(p.Reason, "real mailbox") {
		t.Errorf("reason %q does not say it is a real mailbox", p.Reason)
	}
	if e, _, _ := m.Evidence("bob@example.org"); !e.Real {
		t.Errorf("bob is not remembered as real: %+v", e)
	}
	// Once known real, no probe is needed to refuse it again.
	before, _ := srv.probed()
	if p, _ := m.Promote(ctx, "bob@example.org"); p.Promoted {
		t.Fatal("a real mailbox was promoted on the second try")
	}
	if after, _ := srv.probed(); len(after) != len(before) {
		t.Errorf("a known real mailbox was probed again")
	}

	p, err = m.Promote(ctx, "busy@example.org")
	if err != nil || p.Promoted || set.Is("busy@example.org") {
		t.Fatalf("promotion after a 451: %+v, %v", p, err)
	}
	if e, _, _ := m.Evidence("busy@example.org"); e.Real || e.Probed.IsZero() || !strings.HasPrefix(e.ProbeReply, "451") {
		t.Errorf("busy after an inconclusive probe: %+v", e)
	}

	p, err = m.Promote(ctx, "Sales@Example.org")
	if err != nil || !p.Promoted {
		t.Fatalf("promotion of an unknown address: %+v, %v", p, err)
	}
	if !set.Is("sales@example.org") {
		t.Fatal("promoted, but not a trap")
	}
	if len(p.Evidence.Hosts) != 3 {
		t.Errorf("promotion carries evidence of %d hosts, want 3", len(p.Evidence.Hosts))
	}
	var got []string
	cs, _ := m.Candidates()
	for _, e := range cs {
		got = append(got, e.Addr)
	}
	if strings.Join(got, " ") != "busy@example.org" {
		t.Errorf("candidates after the probes = %v, want only busy@example.org", got)
	}
	// The probe came "from" loopback, so the backend trusts it.
	_, proxied := srv.probed()
	for _, p := range proxied {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("probe presented itself as %s, want 127.0.0.1", p)
		}
	}
}

func TestPromoteBackendDown(t *testing.T) {
	srv := startMailServer(t)
	pr := srv.prober()
	srv.ln.Close()
	c := clock.NewFake(t0)
	st := newStore(t, c)
	set := newTrapSet(t, st)
	m, _ := NewMiner(MinerConfig{Domains: []string{"example.org"}, Clock: c, Probe: pr, Log: quietLog()}, st, set)
	p, err := m.Promote(context.Background(), "sales@example.org")
	if err != nil || p.Promoted || set.Is("sales@example.org") {
		t.Fatalf("promotion with the backend down: %+v, %v", p, err)
	}
}

// TestAutoPromote: in "promote" mode the crossing of min_hosts queues a
// probe, and Run promotes the unknown address but not the real one.
func TestAutoPromote(t *testing.T) {
	srv := startMailServer(t, "bob@example.org")
	c := clock.NewFake(t0)
	st := newStore(t, c)
	set := newTrapSet(t, st)
	m, err := NewMiner(MinerConfig{Auto: AutoPromote, Domains: []string{"example.org"}, Clock: c, Probe: srv.prober(), Log: quietLog()}, st, set)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for _, a := range []string{"bob@example.org", "sales@example.org"} {
		for _, h := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"} {
			m.TarpitRcpt(ip(h), a)
		}
	}
	waitFor(t, "sales@example.org to be promoted", func() bool { return set.Is("sales@example.org") })
	waitFor(t, "bob@example.org to be marked real", func() bool {
		e, _, _ := m.Evidence("bob@example.org")
		return e.Real
	})
	if set.Is("bob@example.org") {
		t.Fatal("a real mailbox was auto-promoted")
	}
	// One probe per address: the fourth host did not queue another.
	rcpts, _ := srv.probed()
	if len(rcpts) != 2 {
		t.Errorf("probes = %v, want one per address", rcpts)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
