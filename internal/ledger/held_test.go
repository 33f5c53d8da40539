package ledger

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// The tarpit's time is counted per host, in all and per day, for the
// dashboard's "today".
func TestHeldCountsTheDay(t *testing.T) {
	l, st, clk := newLedger(t, Config{})
	a, b := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("::ffff:192.0.2.8")
	start := clk.Now()
	l.Held(a, 90*time.Second)
	clk.Advance(24 * time.Hour)
	l.Held(b, 30*time.Second)
	l.Held(a, 1500*time.Millisecond) // rounds to 2
	c, err := st.Counters()
	if err != nil {
		t.Fatal(err)
	}
	yesterday, today := HeldDayCounter(start), HeldDayCounter(clk.Now())
	if c[HeldCounter] != 122 || c[yesterday] != 90 || c[today] != 32 {
		t.Errorf("counters %v: want 122 in all, 90 on %s, 32 on %s", c, yesterday, today)
	}
	// An IPv4-mapped address is its IPv4 host.
	if got := l.HeldSeconds(a); got != 92 {
		t.Errorf("HeldSeconds(%s) = %d, want 92", a, got)
	}
	if got := l.HeldSeconds(netip.MustParseAddr("192.0.2.8")); got != 30 {
		t.Errorf("HeldSeconds(192.0.2.8) = %d, want 30", got)
	}
	// A host's total is forgotten HeldTTL after its last session.
	clk.Advance(HeldTTL + time.Second)
	if got := l.HeldSeconds(a); got != 0 {
		t.Errorf("HeldSeconds after HeldTTL = %d, want 0", got)
	}
}

// Two connections of one host ending at once both count.
func TestHeldConcurrent(t *testing.T) {
	l, _, _ := newLedger(t, Config{})
	a := netip.MustParseAddr("192.0.2.9")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { l.Held(a, time.Second) })
	}
	wg.Wait()
	if got := l.HeldSeconds(a); got != 50 {
		t.Errorf("HeldSeconds = %d after 50 concurrent seconds, want 50", got)
	}
}
