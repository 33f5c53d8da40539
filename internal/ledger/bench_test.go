package ledger

import (
	"testing"
	"time"

	"moat/internal/clock"
)

// BenchmarkTab is what a held connection's envelope costs while it is
// open: a MAIL, five RCPTs (three kept) and the end of the message, in
// bytes allocated per connection (B/op); a bot that never sends MAIL has
// no tab at all. See docs/BENCHMARKS.md.
func BenchmarkTab(b *testing.B) {
	l := &Ledger{cfg: Config{Clock: clock.NewFake(time.Unix(0, 0))}, tabs: tabs{open: map[any]*tab{}}}
	keys := make([]*int, b.N)
	for i := range keys {
		keys[i] = new(int)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := keys[i]
		l.Mail(k, "spammer-12345@bot-network.example")
		for range 5 {
			l.Rcpt(k, "victim.person@some-provider.example")
		}
		l.Told(k, Dropped)
	}
}
