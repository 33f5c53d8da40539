package traps

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/smtp"
	"moat/internal/store"
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
		known    []string // hosts moat has a record of
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
			name:  "the backend's own unknown-user answers count, and teach the domain",
			known: []string{"2001:db8::1"},
			seen: []sighting{
				{"192.0.2.1", "sales@example.org", OriginBackend},
				{"2001:db8::1", "sales@example.org", OriginLog},
				{"192.0.2.3", "sales@example.org", OriginTarpit},
			},
			want: []string{"sales@example.org"},
		},
		{
			name:    "log lines about hosts moat never saw count for nothing",
			domains: []string{"example.org"},
			known:   []string{"192.0.2.1"},
			seen: []sighting{
				{"192.0.2.1", "ceo@example.org", OriginLog},
				{"198.51.100.11", "ceo@example.org", OriginLog},
				{"198.51.100.12", "ceo@example.org", OriginLog},
				{"198.51.100.13", "ceo@example.org", OriginLog},
			},
		},
		{
			name:  "a log line does not teach a domain",
			known: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"},
			seen: []sighting{
				{"192.0.2.1", "ceo@example.org", OriginLog},
				{"192.0.2.2", "ceo@example.org", OriginLog},
				{"192.0.2.3", "ceo@example.org", OriginLog},
			},
		},
		{
			name:  "a backend answer does teach one, and then the log counts",
			known: []string{"192.0.2.1", "192.0.2.2"},
			seen: []sighting{
				{"192.0.2.3", "ceo@example.org", OriginBackend},
				{"192.0.2.1", "ceo@example.org", OriginLog},
				{"192.0.2.2", "ceo@example.org", OriginLog},
			},
			want: []string{"ceo@example.org"},
		},
		{
			name:    "one IPv6 /64 is one host",
			domains: []string{"example.org"},
			seen: []sighting{
				{"2001:db8:1:2::1", "sales@example.org", OriginTarpit},
				{"2001:db8:1:2::2", "sales@example.org", OriginTarpit},
				{"2001:db8:1:2:ffff::3", "sales@example.org", OriginTarpit},
				{"2001:db8:1:3::1", "sales@example.org", OriginTarpit},
			},
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
			for _, h := range tt.known {
				knowHost(t, st, h)
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
		// Every other one is a host moat has a record of.
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if i%2 == 0 {
			knowHost(t, st, a.String())
		}
		m.Targeted(a, "sales@example.org", OriginLog)
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
	for _, h := range e.Hosts[2:] {
		if h.As4()[3]%2 != 0 {
			t.Errorf("host %s counted: moat never saw it", h)
		}
	}
	if e.Sources[OriginTarpit] != 1 || e.Sources[OriginBackend] != 1 || e.Sources[OriginLog] != MaxHosts {
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

// knowHost gives moat a record of a host, as a connection would.
func knowHost(t *testing.T, st store.Store, addr string) {
	t.Helper()
	if err := st.PutHost(store.Host{Prefix: store.HostPrefix(ip(addr)), Class: store.Grey, Reason: "greylisted", First: t0, Last: t0}); err != nil {
		t.Fatal(err)
	}
}

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

// TestPromoteOnlyUnknownUser: a full mailbox and a policy refusal are 5xx
// too, but say nothing about whether the mailbox exists: the candidate
// stays a candidate, with the reply in its record.
func TestPromoteOnlyUnknownUser(t *testing.T) {
	srv := startMailServer(t)
	c := clock.NewFake(t0)
	st := newStore(t, c)
	set := newTrapSet(t, st)
	m, err := NewMiner(MinerConfig{Domains: []string{"example.org"}, Clock: c, Probe: srv.prober(), Log: quietLog()}, st, set)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"full@example.org", "policy@example.org"} {
		for _, h := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
			m.TarpitRcpt(ip(h), a)
		}
	}
	for addr, reply := range map[string]string{"full@example.org": "552 5.2.2", "policy@example.org": "550 5.7.1"} {
		p, err := m.Promote(context.Background(), addr)
		if err != nil || p.Promoted || set.Is(addr) {
			t.Fatalf("%s after %s: %+v, %v; want not promoted", addr, reply, p, err)
		}
		if !strings.Contains(p.Reason, "not conclusive") {
			t.Errorf("%s: reason %q, want not conclusive", addr, p.Reason)
		}
		e, _, _ := m.Evidence(addr)
		if e.Real || !strings.HasPrefix(e.ProbeReply, reply) {
			t.Errorf("%s after %s: %+v, want a candidate with the reply recorded", addr, reply, e)
		}
	}
	if cs, _ := m.Candidates(); len(cs) != 2 {
		t.Errorf("candidates after the probes: %v, want both still there", cs)
	}
}

func TestUnknownUser(t *testing.T) {
	for _, tc := range []struct {
		r    smtp.Reply
		want bool
	}{
		{smtp.Reply{Code: 550, Lines: []string{"5.1.1 <a@b>: Recipient address rejected: User unknown in virtual mailbox table"}}, true},
		{smtp.Reply{Code: 550, Lines: []string{"5.1.1 unknown"}}, true},
		{smtp.Reply{Code: 550, Lines: []string{"Unrouteable address"}}, true},
		{smtp.Reply{Code: 550, Lines: []string{"unknown user"}}, true},
		{smtp.Reply{Code: 550, Lines: []string{"<a@b>... User unknown"}}, true},
		{smtp.Reply{Code: 550, Lines: []string{"<a@b>: No such user here"}}, true},
		// Every other reply is inconclusive.
		{smtp.Reply{Code: 552, Lines: []string{"5.2.2 <a@b>: Mailbox full"}}, false},
		{smtp.Reply{Code: 550, Lines: []string{"5.7.1 <a@b>: Access denied; user unknown"}}, false},
		{smtp.Reply{Code: 550, Lines: []string{"5.2.1 <a@b>: Mailbox disabled"}}, false},
		{smtp.Reply{Code: 553, Lines: []string{"5.1.1 <a@b>: odd code"}}, false},
		{smtp.Reply{Code: 554, Lines: []string{"User unknown"}}, false},
		{smtp.Reply{Code: 450, Lines: []string{"4.1.1 <a@b>: Recipient address rejected: unverified address"}}, false},
		{smtp.Reply{Code: 550, Lines: []string{"Mailbox full"}}, false},
		{smtp.Reply{Code: 550, Lines: []string{"<\"x> user unknown\"@b>: Mailbox full"}}, false},
		{smtp.Reply{Code: 550}, false},
	} {
		if got := replyUnknownUser(tc.r); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.r.String(), got, tc.want)
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

// TestMinerBounds: records for accepted addresses count against the
// record cap, learnt domains have a cap, and each cap is logged once.
func TestMinerBounds(t *testing.T) {
	c := clock.NewFake(t0)
	st := newStore(t, c)
	var logged bytes.Buffer
	m, err := NewMiner(MinerConfig{MaxRecords: 3, Clock: c, Log: slog.New(slog.NewTextHandler(&logged, nil))}, st, newTrapSet(t, st))
	if err != nil {
		t.Fatal(err)
	}
	ok := smtp.Reply{Code: 250, Lines: []string{"2.1.5 Ok"}}
	for i := range maxLearned + 10 {
		m.BackendRcpt(ip("192.0.2.1"), fmt.Sprintf("user%d@d%d.example", i, i), ok)
	}
	n := 0
	st.Scan(kindCandidate, func(string, []byte) bool { n++; return true })
	if n != 3 {
		t.Errorf("%d records after %d accepted addresses, want the cap 3", n, maxLearned+10)
	}
	if got := m.learned.Len(); got != maxLearned {
		t.Errorf("%d domains learnt, want the cap %d", got, maxLearned)
	}
	for _, what := range []string{"evidence records at their cap", "learnt domains at their cap"} {
		if k := strings.Count(logged.String(), what); k != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", what, k, logged.String())
		}
	}
}
