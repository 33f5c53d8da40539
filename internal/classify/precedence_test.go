package classify

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/reputation"
	"moat/internal/store"
)

// The precedence of evidence as a table: the stored entry, the evidence
// that arrives, and what the host is afterwards.
func TestPrecedence(t *testing.T) {
	type entry struct {
		class  store.Class
		source store.Source
	}
	var (
		operatorWhite = entry{store.White, store.SourceOperator}
		operatorBlack = entry{store.Black, store.SourceOperator}
		trapBlack     = entry{store.Black, store.SourceTrap}
		earlyBlack    = entry{store.Black, store.SourceEarlyTalk}
		smuggleBlack  = entry{store.Black, store.SourceSmuggling}
		dnsblBlack    = entry{store.Black, store.SourceDNSBL}
		feedbackBlack = entry{store.Black, store.SourceFeedback}
		feedbackGrey  = entry{store.Grey, store.SourceFeedback}
		escalated     = entry{store.Black, store.SourceEscalation}
		accepted      = entry{store.White, store.SourceAccepted}
		dnswlWhite    = entry{store.White, store.SourceDNSWL}
		greylisted    = entry{store.Grey, store.SourceGreylist}
		importWhite   = entry{store.White, store.SourceImport}
		importBlack   = entry{store.Black, store.SourceImport}
		relayBlack    = entry{store.Black, store.SourceRelay}
		netlistBlack  = entry{store.Black, store.SourceNetList}
	)
	for _, tc := range []struct {
		old, new entry
		want     entry
	}{
		// A greylist pass (an accepted message) never undoes black,
		// nor any operator entry.
		{trapBlack, accepted, trapBlack},
		{earlyBlack, accepted, earlyBlack},
		{smuggleBlack, accepted, smuggleBlack},
		{dnsblBlack, accepted, dnsblBlack},
		{feedbackBlack, accepted, feedbackBlack},
		{feedbackGrey, accepted, feedbackGrey},
		{escalated, accepted, escalated},
		{importBlack, accepted, importBlack},
		{operatorBlack, accepted, operatorBlack},
		{operatorWhite, accepted, operatorWhite},
		{greylisted, accepted, accepted},
		{accepted, accepted, accepted},
		{importWhite, accepted, accepted},
		// Operator entries change only by the operator.
		{operatorWhite, trapBlack, operatorWhite},
		{operatorWhite, dnsblBlack, operatorWhite},
		{operatorWhite, feedbackBlack, operatorWhite},
		{operatorBlack, dnswlWhite, operatorBlack},
		{operatorBlack, greylisted, operatorBlack},
		// Proof of a bot beats weaker evidence, in both directions.
		{accepted, trapBlack, trapBlack},
		{dnswlWhite, earlyBlack, earlyBlack},
		{dnsblBlack, trapBlack, trapBlack},
		{trapBlack, feedbackBlack, trapBlack},
		{trapBlack, dnswlWhite, trapBlack},
		{trapBlack, feedbackGrey, trapBlack},
		// A relay attempt in the tarpit proves a host black for a weaker
		// reason a bot; an operator's entry stands.
		{dnsblBlack, relayBlack, relayBlack},
		{feedbackBlack, relayBlack, relayBlack},
		{escalated, relayBlack, relayBlack},
		{netlistBlack, relayBlack, relayBlack},
		{importBlack, relayBlack, relayBlack},
		{operatorBlack, relayBlack, operatorBlack},
		{relayBlack, dnsblBlack, relayBlack},
		// Evidence beats a pass; at equal rank black stands.
		{accepted, feedbackGrey, feedbackGrey},
		{accepted, dnsblBlack, dnsblBlack},
		{dnsblBlack, dnswlWhite, dnsblBlack},
		{dnsblBlack, feedbackGrey, dnsblBlack},
		{feedbackBlack, feedbackGrey, feedbackBlack},
		{feedbackGrey, feedbackBlack, feedbackBlack},
		{dnsblBlack, feedbackBlack, feedbackBlack},
		// Waiting out the greylist is the weakest.
		{greylisted, dnsblBlack, dnsblBlack},
		{dnswlWhite, greylisted, dnswlWhite},
		{importWhite, greylisted, importWhite},
	} {
		t.Run(fmt.Sprintf("%v-%v/then/%v-%v", tc.old.source, tc.old.class, tc.new.source, tc.new.class), func(t *testing.T) {
			f := newFixture(t, Config{})
			p := store.HostPrefix(ip("192.0.2.1"))
			exp := f.clk.Now().Add(time.Hour)
			if tc.old.source == store.SourceOperator {
				exp = time.Time{}
			}
			if err := f.st.PutHost(store.Host{Prefix: p, Class: tc.old.class, Source: tc.old.source, Reason: "old", Expires: exp}); err != nil {
				t.Fatal(err)
			}
			h, wrote, err := f.eng.setHost(p, tc.new.class, tc.new.source, "new", time.Hour, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := (entry{h.Class, h.Source}); got != tc.want {
				t.Errorf("after %v: %v, want %v", tc.new, got, tc.want)
			}
			if wantWrote := tc.want == tc.new && tc.old != tc.new || tc.old == tc.new; wrote != wantWrote {
				t.Errorf("wrote = %v, want %v", wrote, wantWrote)
			}
			if stored := f.host(t, "192.0.2.1"); stored.Class != h.Class || stored.Source != h.Source {
				t.Errorf("stored %+v, returned %+v", stored, h)
			}
		})
	}
}

// Entries written before sources were kept are ranked by the reason moat
// wrote and by their expiry.
func TestSourceOfLegacyEntries(t *testing.T) {
	exp := t0.Add(time.Hour)
	for _, tc := range []struct {
		h    store.Host
		want store.Source
	}{
		{store.Host{Class: store.Black, Reason: "operator"}, store.SourceOperator},
		{store.Host{Class: store.White, Reason: "operator"}, store.SourceOperator},
		{store.Host{Class: store.Black, Reason: "trap hit <t@example.org>", Expires: exp}, store.SourceTrap},
		{store.Host{Class: store.Black, Reason: "early talker", Expires: exp}, store.SourceEarlyTalk},
		{store.Host{Class: store.Black, Reason: "harvested bait <b@x> at …", Expires: exp}, store.SourceBait},
		{store.Host{Class: store.White, Reason: "greylist: retried after 5m0s", Expires: exp}, store.SourceAccepted},
		{store.Host{Class: store.Grey, Reason: "greylisted: first attempt", Expires: exp}, store.SourceGreylist},
		{store.Host{Class: store.Black, Reason: "network escalation: 3 black hosts", Expires: exp}, store.SourceEscalation},
		{store.Host{Class: store.Black, Reason: "something else", Expires: exp}, store.SourceDNSBL},
		{store.Host{Class: store.Black, Source: store.SourceTrap, Reason: "operator"}, store.SourceTrap},
	} {
		if got := SourceOf(tc.h); got != tc.want {
			t.Errorf("SourceOf(%+v) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

// A host that passed the greylist and turned black (a trap hit on another
// connection, the operator) before its message was accepted stays black:
// the acceptance must not overwrite it.
func TestAcceptedNeverUndoesBlack(t *testing.T) {
	for name, blacken := range map[string]func(f *fixture, a netip.Addr){
		"trap on another connection": func(f *fixture, a netip.Addr) { f.eng.Rcpt(a, "x@sender.example", trap) },
		"operator": func(f *fixture, a netip.Addr) {
			f.eng.SetClass(store.HostPrefix(a), store.Black, "operator")
		},
		"early talk on another connection": func(f *fixture, a netip.Addr) { f.eng.EarlyTalker(a, "early talker") },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Config{})
			a := ip("198.51.100.7")
			f.eng.Rcpt(a, "alice@sender.example", "bob@example.org")
			f.clk.Advance(5 * time.Minute)
			d, _ := f.eng.Rcpt(a, "alice@sender.example", "bob@example.org")
			if d.Action != Pass {
				t.Fatalf("retry = %+v, want pass", d)
			}
			blacken(f, a)
			if d, _ := f.eng.RcptPassed(a, "alice@sender.example", "carol@example.org"); d.Action != Black {
				t.Errorf("the next RCPT of the passed session = %+v, want black", d)
			}
			if v, _ := f.eng.Accepted(a, "alice@sender.example", d.Reason); v.Class != store.Black {
				t.Errorf("Accepted after the host turned black = %+v, want black", v)
			}
			if v := f.classify(t, "198.51.100.7"); v.Class != store.Black {
				t.Errorf("host is %+v, want black", v)
			}
		})
	}
}

// Two sessions of one host race: one's message is accepted while the
// other talks before the banner, or the operator blacklists the host.
// Whatever the interleaving, the host ends black.
func TestAcceptedRacesBlack(t *testing.T) {
	for name, blacken := range map[string]func(f *fixture, a netip.Addr){
		"early talk": func(f *fixture, a netip.Addr) { f.eng.EarlyTalker(a, "early talker") },
		"operator":   func(f *fixture, a netip.Addr) { f.eng.SetClass(store.HostPrefix(a), store.Black, "operator") },
	} {
		t.Run(name, func(t *testing.T) {
			for i := range 50 {
				f := newFixture(t, Config{})
				a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
				var wg sync.WaitGroup
				wg.Add(2)
				go func() {
					defer wg.Done()
					for range 20 {
						f.eng.Accepted(a, "alice@sender.example", "greylist: retried")
					}
				}()
				go func() {
					defer wg.Done()
					blacken(f, a)
				}()
				wg.Wait()
				if v, _ := f.eng.Classify(a); v.Class != store.Black {
					t.Fatalf("round %d: host is %+v after accepted mail raced %s, want black", i, v, name)
				}
			}
		})
	}
}

// A trap named through a host that is vouched for does not blacklist it:
// the RCPT is refused, the host loses karma, the hit is in its history.
func TestTrapHitVouchedFor(t *testing.T) {
	f := newFixture(t, Config{Whitelist: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	f.eng.SetReputation(Reputation{})
	provider := ip("198.51.100.9")
	// The provider's server delivered accepted mail once.
	f.eng.Rcpt(provider, "user@provider.example", "bob@example.org")
	f.clk.Advance(5 * time.Minute)
	d, _ := f.eng.Rcpt(provider, "user@provider.example", "bob@example.org")
	f.eng.Accepted(provider, "user@provider.example", d.Reason)
	// Its white entry expires; the accepted mail still vouches for it.
	f.clk.Advance(whiteTTL - time.Hour)
	f.eng.Forget(store.HostPrefix(provider))

	for _, client := range []string{"198.51.100.9", "203.0.113.5"} {
		d, err := f.eng.Rcpt(ip(client), "attacker@provider.example", trap)
		if err != nil || d.Action != Refuse {
			t.Fatalf("trap through %s = %+v %v, want refuse", client, d, err)
		}
		if v := f.classify(t, client); v.Class == store.Black {
			t.Errorf("%s is black after one trap hit: %+v", client, v)
		}
	}
	if k, ok, _ := f.eng.KarmaOf(provider); !ok || k >= 0 {
		t.Errorf("karma after a refused trap hit = %v, %v; want negative", k, ok)
	}
	hist, _ := f.eng.History(store.HostPrefix(provider))
	if last := hist[len(hist)-1]; !strings.Contains(last.Reason, "trap hit <"+trap+">: refused, not blacklisted") {
		t.Errorf("last history event %+v, want the refused trap hit", last)
	}
	// A stranger is black at once: the founding rule.
	if d, _ := f.eng.Rcpt(ip("192.0.2.66"), "x@bot.example", trap); d.Action != Trap {
		t.Errorf("a stranger's trap hit = %+v, want trap", d)
	}
}

// Trap hits count towards network escalation only from grey, unknown
// hosts: a host that was listed for something else adds nothing.
func TestEscalationCountsOnlyUnknownTrapHitters(t *testing.T) {
	f := newFixture(t, Config{})
	f.eng.SetReputation(Reputation{Nets: reputation.Escalation{Threshold: 2, Window: time.Hour, TTL: time.Hour}})
	// Black by a filter first, then a trap: not new evidence about the network.
	f.eng.Feedback(reputation.Feedback{IP: ip("192.0.2.1"), Verdict: reputation.Spam, Source: "rspamd"})
	f.eng.Feedback(reputation.Feedback{IP: ip("192.0.2.1"), Verdict: reputation.Spam, Source: "rspamd"})
	f.eng.Blacklist(ip("192.0.2.2"), store.SourceTrap, "trap hit <x@y>")
	if v := f.classify(t, "192.0.2.50"); v.Class != store.Black {
		t.Fatalf("two black hosts (feedback, then an unknown trap hitter) did not escalate: %+v", v)
	}
	g := newFixture(t, Config{})
	g.eng.SetReputation(Reputation{Nets: reputation.Escalation{Threshold: 2, Window: time.Hour, TTL: time.Hour}})
	g.st.PutHost(store.Host{Prefix: store.HostPrefix(ip("192.0.2.1")), Class: store.Grey, Source: store.SourceFeedback, Reason: "feedback", Expires: t0.Add(time.Hour)})
	g.eng.Blacklist(ip("192.0.2.1"), store.SourceTrap, "trap hit <x@y>")
	g.eng.Blacklist(ip("192.0.2.2"), store.SourceTrap, "trap hit <x@y>")
	if v := g.classify(t, "192.0.2.50"); v.Class != store.Grey {
		t.Errorf("a trap hit from a host with a filter's record counted towards escalation: %+v", v)
	}
}
