package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/store/redis/redistest"
)

// twoNodeConfig is one MX of a pair sharing a Redis. The cache TTL is a
// minute: a change made on one node that shows on the other sooner than
// that came by the change channel, not by the cache running out.
const twoNodeConfig = `listen = "{{listen}}"
hostname = "mx.example.test"
backend = "{{backend}}"
backend_proxy_protocol = "v2"
data_dir = "{{data_dir}}"
store = "{{redis}}"

[greylist]
greet_delay = "200ms"
min_retry = "2s"
retry_window = "1h"

[tarpit]
stutter = "20ms"

[traps]
addresses = ["trap@example.test"]

[redis]
prefix = "twonode:"
cache_ttl = "1m"
`

func portOf(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// bracket writes host:port as a Postfix next hop that needs no MX lookup.
func bracket(addr string) string {
	i := strings.LastIndex(addr, ":")
	return "[" + addr[:i] + "]" + addr[i:]
}

// tarpitted connects from ip to m and reports whether the banner came
// stuttered, one byte at a time: the tarpit's mark.
func tarpitted(t *testing.T, ip string, m *Moat) bool {
	t.Helper()
	c := Dial(t, ip, m.Addr)
	defer c.Close()
	code, banner := c.Reply(t)
	if code != 220 {
		t.Fatalf("banner from %s to %s: %q", ip, m.Addr, banner)
	}
	return c.Reads() >= 10
}

// waitTarpitted polls until m tarpits ip and returns how long it took.
func waitTarpitted(t *testing.T, ip string, m *Moat, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for !tarpitted(t, ip, m) {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("%s: %s is still not tarpitted on %s after 20s", what, ip, m.Addr)
		}
	}
	return time.Since(start)
}

func TestTwoNodeSharedRedis(t *testing.T) {
	srv := redistest.Start(t)
	b := StartBackend(t, true, alice)
	vars := []string{"{{backend}}", b.Addr, "{{redis}}", srv.URL(0)}
	nodeA := StartMoat(t, twoNodeConfig, vars...)
	nodeB := StartMoat(t, twoNodeConfig, vars...)

	// A sender is greylisted on A and retries on B, its next MX, while A
	// is down: B knows A's triplet and hands the retry to the backend.
	// (Postfix 3.5 and later try a relayhost list in order, and after a
	// 4xx to RCPT from the first they try the next at once.)
	const senderIP = "127.0.0.40"
	s := StartSender(t, nodeA.Addr, senderIP)
	s.Set(t, "relayhost = "+bracket(nodeA.Addr)+", "+bracket(nodeB.Addr))
	s.Send(t, "bob@sender.test", alice, "two MX hosts", "greylisted on A, passed on B")
	s.WaitLog(t, `status=deferred .*451 4\.7\.1`, 20*time.Second)
	nodeA.Stop(t)
	s.Flush(t)
	msgs := b.WaitMessages(t, alice, 1, 60*time.Second)
	s.WaitQueueEmpty(t, 10*time.Second)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: two MX hosts") {
		t.Fatalf("alice has %d messages, want the one sent:\n%s", len(msgs), strings.Join(msgs, "\n---\n"))
	}
	s.WaitLog(t, `relay=127\.0\.0\.1\[127\.0\.0\.1\]:`+portOf(nodeB.Addr)+`, .*status=sent`, 5*time.Second)
	for _, rec := range nodeB.LogRecords() {
		if rec["msg"] == "session" && mentions(rec, senderIP) && rec["reason"] == "first attempt" {
			t.Errorf("B took the sender for a first attempt, though A had seen its triplet: %v", rec)
		}
	}
	nodeA.start(t)
	waitRecord(t, nodeB, "B passing the sender's retry", func(rec map[string]any) bool {
		return rec["class"] == "grey" && rec["verdict"] == "passed" && mentions(rec, senderIP)
	})
	for _, m := range []*Moat{nodeA, nodeB} {
		if class := m.Hosts(t)[senderIP]; class != "white" {
			t.Errorf("%s lists the sender as %q, want white", m.Addr, class)
		}
	}

	// A bot that A has seen (and cached as unknown) hits a trap on B: A
	// tarpits it at once.
	const botIP = "127.0.0.41"
	if tarpitted(t, botIP, nodeA) {
		t.Fatal("an unknown host is tarpitted on A")
	}
	c := Dial(t, botIP, nodeB.Addr)
	expect(t, c, "", 220)
	expect(t, c, "EHLO bot.test", 250)
	expect(t, c, "MAIL FROM:<bot@spam.test>", 250)
	c.Cmd(t, "RCPT TO:<trap@example.test>")
	c.Close()
	took := waitTarpitted(t, botIP, nodeA, "trap hit on B")
	t.Logf("A tarpitted the bot trapped on B after %v", took.Round(time.Millisecond))
	if class := nodeA.Hosts(t)[botIP]; class != "black" {
		t.Errorf("A lists the trapped bot as %q, want black", class)
	}

	// The operator's word on one node applies on the other.
	const badIP = "127.0.0.42"
	if tarpitted(t, badIP, nodeB) {
		t.Fatal("an unknown host is tarpitted on B")
	}
	nodeA.CLI(t, "hosts", "black", badIP)
	waitTarpitted(t, badIP, nodeB, "moat hosts black on A")
	if class := nodeB.Hosts(t)[badIP]; class != "black" {
		t.Errorf("B lists %s as %q after hosts black on A, want black", badIP, class)
	}
	nodeB.CLI(t, "hosts", "forget", badIP)
	for deadline := time.Now().Add(20 * time.Second); tarpitted(t, badIP, nodeA); {
		if time.Now().After(deadline) {
			t.Fatalf("A still tarpits %s 20s after hosts forget on B", badIP)
		}
	}

	// Export through a running daemon holds what both nodes wrote.
	file := filepath.Join(t.TempDir(), "state.jsonl")
	nodeB.CLI(t, "export", file)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"prefix":"` + senderIP + `/32","class":"white"`, `"prefix":"` + botIP + `/32","class":"black"`, `"type":"triplet"`, `{"type":"end"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("export lacks %s:\n%s", want, data)
		}
	}

	for _, m := range []*Moat{nodeA, nodeB} {
		if strings.Contains(m.Log(), "redis: unreachable") {
			t.Errorf("%s logged a Redis outage:\n%s", m.Addr, tail(m.Log(), 20))
		}
	}
}
