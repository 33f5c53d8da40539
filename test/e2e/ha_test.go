package e2e

import (
	"strings"
	"testing"

	"moat/internal/store/redis/redistest"
)

// haConfig is one MX of a pair on a replicated Redis. No backend answers:
// these tests look at what the MX hosts share, not at delivery.
const haConfig = `listen = "{{listen}}"
hostname = "mx.example.test"
backend = "127.0.0.1:9"
data_dir = "{{data_dir}}"
store = "{{redis}}"

[greylist]
greet_delay = "100ms"

[tarpit]
stutter = "20ms"

[traps]
addresses = ["trap@example.test"]

[redis]
prefix = "ha:"
`

// trapHit sends a bot from ip into the trap on m.
func trapHit(t *testing.T, m *Moat, ip string) {
	t.Helper()
	c := Dial(t, ip, m.Addr)
	defer c.Close()
	expect(t, c, "", 220)
	expect(t, c, "EHLO bot.test", 250)
	expect(t, c, "MAIL FROM:<bot@spam.test>", 250)
	c.Cmd(t, "RCPT TO:<trap@example.test>")
}

// greylisted checks that an unknown sender from ip is told 4xx, never
// 5xx, at RCPT on m.
func greylisted(t *testing.T, m *Moat, ip string) {
	t.Helper()
	c := Dial(t, ip, m.Addr)
	defer c.Close()
	expect(t, c, "", 220)
	expect(t, c, "EHLO sender.test", 250)
	expect(t, c, "MAIL FROM:<someone@sender.test>", 250)
	if code, text := c.Cmd(t, "RCPT TO:<alice@example.test>"); code/100 != 4 {
		t.Errorf("an unknown sender from %s got %q at RCPT on %s, want 4xx", ip, text, m.Addr)
	}
}

// Two moats on Sentinel (a master, a replica, three Sentinels). What the
// operator and the traps did before the master is killed is still known
// to both after the replica took over; while it happens, unknown senders
// get 4xx; afterwards both moats go on sharing.
func TestSentinelFailoverDaemons(t *testing.T) {
	sen := redistest.StartSentinel(t)
	a := StartMoat(t, haConfig, "{{redis}}", sen.URL(0))
	b := StartMoat(t, haConfig, "{{redis}}", sen.URL(0))

	a.CLI(t, "hosts", "black", "127.0.0.60")
	trapHit(t, b, "127.0.0.61")
	waitTarpitted(t, "127.0.0.61", a, "trap hit on B")

	sen.Failover(t)
	greylisted(t, a, "127.0.0.62")
	sen.RejoinOld(t)

	// Acknowledged before the failover, there after it: asked of a third
	// moat, with nothing cached.
	c := StartMoat(t, haConfig, "{{redis}}", sen.URL(0))
	hosts := c.Hosts(t)
	for _, ip := range []string{"127.0.0.60", "127.0.0.61"} {
		if hosts[ip] != "black" {
			t.Errorf("after the failover %s is %q, want black: %v", ip, hosts[ip], hosts)
		}
	}
	b.CLI(t, "hosts", "black", "127.0.0.63")
	waitTarpitted(t, "127.0.0.63", a, "hosts black on B after the failover")
	trapHit(t, a, "127.0.0.64")
	waitTarpitted(t, "127.0.0.64", b, "trap hit on A after the failover")
	greylisted(t, b, "127.0.0.65")
}

// Two moats on Redis Cluster (three masters): hosts, traps and greylist
// answers are shared though their keys live on different masters.
func TestClusterDaemons(t *testing.T) {
	cl := redistest.StartCluster(t)
	a := StartMoat(t, haConfig, "{{redis}}", cl.URL())
	b := StartMoat(t, haConfig, "{{redis}}", cl.URL())
	for i, ip := range []string{"127.0.0.70", "127.0.0.71", "127.0.0.72"} {
		if i%2 == 0 {
			a.CLI(t, "hosts", "black", ip)
			waitTarpitted(t, ip, b, "hosts black on A")
		} else {
			trapHit(t, b, ip)
			waitTarpitted(t, ip, a, "trap hit on B")
		}
	}
	greylisted(t, a, "127.0.0.73")
	for _, m := range []*Moat{a, b} {
		if strings.Contains(m.Log(), "redis: unreachable") {
			t.Errorf("%s logged a Redis outage:\n%s", m.Addr, tail(m.Log(), 20))
		}
	}
}
