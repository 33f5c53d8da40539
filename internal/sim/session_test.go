package sim

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"moat/internal/clock"
	"moat/internal/config"
	"moat/internal/daemon"
	"moat/internal/ledger"
	"moat/internal/store"
	"moat/internal/store/bolt"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

const trapAddr = "old-sales@moat.example"

// newPlayer is a Player over moat's defaults with one trap, on a fake
// clock; edit changes the configuration first.
func newPlayer(t *testing.T, edit func(*config.Config)) (*Player, *clock.Fake) {
	t.Helper()
	cfg := config.Default()
	cfg.Hostname = "mx.moat.example"
	cfg.Traps.Addresses = []string{trapAddr}
	if edit != nil {
		edit(cfg)
	}
	clk := clock.NewFake(t0)
	st := bolt.Memory(bolt.Options{Clock: clk})
	t.Cleanup(func() { st.Close() })
	eng, err := daemon.NewSimEngine(cfg, st, clk, newSPFResolver(DefaultModel()))
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.New(st, ledger.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return &Player{Eng: eng, Clock: clk, GreetDelay: cfg.Greylist.GreetDelay.Duration, MaxRcpts: cfg.Limits.MaxRcpts,
		Tarpit: daemon.TarpitConfig(cfg, daemon.NewWords(cfg, false)), Mailbox: DefaultModel().isMailbox, Ledger: led}, clk
}

var (
	hostA = netip.MustParseAddr("11.0.0.1")
	hostB = netip.MustParseAddr("64.0.0.1")
)

func class(t *testing.T, p *Player, a netip.Addr) (store.Class, store.Source) {
	t.Helper()
	v, err := p.Eng.Classify(a)
	if err != nil {
		t.Fatal(err)
	}
	return v.Class, v.Source
}

// TestPlayGreylistPassWhiten: a first attempt is deferred, the retry
// after min_retry passes and is delivered, and only then is the host
// white: its next connection is spliced.
func TestPlayGreylistPassWhiten(t *testing.T) {
	p, clk := newPlayer(t, nil)
	a := Attempt{Client: hostA, Sender: "user1@postfix.example", Rcpts: []string{"user1@moat.example", "user2@moat.example"}}
	o := p.Play(a)
	if o.Verdict != "greylisted" || o.Class != store.Grey || len(o.Deferred) != 2 || len(o.Accepted) != 0 {
		t.Fatalf("first attempt: %+v", o)
	}
	clk.Advance(30 * time.Second)
	if o := p.Play(a); o.Verdict != "greylisted" || len(o.Deferred) != 2 {
		t.Fatalf("retry too soon: %+v", o)
	}
	clk.Advance(5 * time.Minute)
	o = p.Play(a)
	if o.Verdict != "passed" || !slices.Equal(o.Accepted, a.Rcpts) || len(o.Deferred) != 0 {
		t.Fatalf("retry: %+v", o)
	}
	if c, src := class(t, p, hostA); c != store.White || src != store.SourceAccepted {
		t.Fatalf("after an accepted message the host is %s (%s), want white (accepted)", c, src)
	}
	if o := p.Play(Attempt{Client: hostA, Sender: "user9@postfix.example", Rcpts: []string{"user3@moat.example", "x1@moat.example"}}); o.Verdict != "spliced" ||
		!slices.Equal(o.Accepted, []string{"user3@moat.example"}) || !slices.Equal(o.Refused, []string{"x1@moat.example"}) {
		t.Fatalf("white host: %+v", o)
	}
}

// TestPlayEarlyTalker: a client that talks inside the greet delay is black
// and held; without a greet delay nobody can tell.
func TestPlayEarlyTalker(t *testing.T) {
	p, _ := newPlayer(t, nil)
	a := Attempt{Client: hostB, EarlyTalk: true, Sender: "x@forged.example", Rcpts: []string{"user1@moat.example"}}
	o := p.Play(a)
	if o.Verdict != "early-talker" || !o.Tarpit || o.Held <= 0 || !slices.Equal(o.Faked, a.Rcpts) {
		t.Fatalf("early talker: %+v", o)
	}
	if c, src := class(t, p, hostB); c != store.Black || src != store.SourceEarlyTalk {
		t.Fatalf("early talker is %s (%s)", c, src)
	}
	if o := p.Play(a); o.Verdict != "tarpit" || o.Class != store.Black {
		t.Fatalf("next connection: %+v", o)
	}
	q, _ := newPlayer(t, func(c *config.Config) { c.Greylist.GreetDelay = config.Duration{} })
	if o := q.Play(a); o.Verdict != "greylisted" {
		t.Fatalf("no greet delay: %+v", o)
	}
}

// TestPlayTrap: a trap named in RCPT makes the host black at once; the
// recipient before it was deferred, the ones after it are the tarpit's.
func TestPlayTrap(t *testing.T) {
	p, _ := newPlayer(t, nil)
	a := Attempt{Client: hostB, Sender: "x@forged.example", Rcpts: []string{"user1@moat.example", trapAddr, "user2@moat.example"}}
	o := p.Play(a)
	if o.Verdict != "trap" || !o.Tarpit || !slices.Equal(o.Deferred, a.Rcpts[:2]) || !slices.Equal(o.Faked, a.Rcpts[2:]) {
		t.Fatalf("trap: %+v", o)
	}
	if c, src := class(t, p, hostB); c != store.Black || src != store.SourceTrap {
		t.Fatalf("trap hitter is %s (%s)", c, src)
	}
	if p.Ledger.HeldSeconds(hostB) != int64(o.Held/time.Second) {
		t.Errorf("held %d s in the store, the session %s", p.Ledger.HeldSeconds(hostB), o.Held)
	}
}

// TestPlayTarpitLimits: a client leaves after its patience, and the tarpit
// refuses what does not fit in max_conns.
func TestPlayTarpitLimits(t *testing.T) {
	p, _ := newPlayer(t, func(c *config.Config) { c.Tarpit.MaxConns = 1 })
	a := Attempt{Client: hostB, EarlyTalk: true, Sender: "x@forged.example", Rcpts: []string{"user1@moat.example"}, Patience: time.Minute}
	o := p.Play(a)
	if o.Held != time.Minute || len(o.Faked) != 0 || o.Cost.Time <= time.Minute {
		t.Fatalf("patience: %+v", o)
	}
	o = p.Play(a)
	if !o.Tarpit || o.Held != 0 || p.Full != 1 || p.Peak != 1 {
		t.Fatalf("tarpit full: %+v, full %d, peak %d", o, p.Full, p.Peak)
	}
}

// TestPlayPassOnNextRetry: spamd's rule costs a sender one more retry.
func TestPlayPassOnNextRetry(t *testing.T) {
	p, clk := newPlayer(t, func(c *config.Config) { c.Greylist.PassOnNextRetry = true })
	a := Attempt{Client: hostA, Sender: "user1@postfix.example", Rcpts: []string{"user1@moat.example"}}
	for i, want := range []string{"greylisted", "greylisted", "passed"} {
		if o := p.Play(a); o.Verdict != want {
			t.Fatalf("attempt %d: %+v, want %s", i, o, want)
		}
		clk.Advance(5 * time.Minute)
	}
}
