package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// A mistake never costs mail: a host black for a reason that proves
// nothing about it (the operator's "moat hosts black", a config blacklist
// entry) meets the tarpit's stutter and words and is told 451 at the end
// of DATA, so a real Postfix sender keeps the message queued; what it was
// told is on record; once the operator releases it, its retry is delivered
// exactly once. A trap hitter, proven a bot, is told 250 and nothing is
// delivered.

// toldRecord is the part of "moat hosts show --json" this file reads.
type toldRecord struct {
	Class string `json:"class"`
	Told  *struct {
		Dropped  int64 `json:"dropped"`
		Deferred int64 `json:"deferred"`
		Sessions []struct {
			Messages []struct {
				Told   string   `json:"told"`
				Sender string   `json:"sender"`
				Rcpts  []string `json:"rcpts"`
			} `json:"messages"`
		} `json:"sessions"`
	} `json:"told"`
}

func told(t *testing.T, m *Moat, ip string) toldRecord {
	t.Helper()
	var r toldRecord
	out := m.CLI(t, "hosts", "show", ip, "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("hosts show %s --json: %v\n%s", ip, err, out)
	}
	return r
}

// waitTold polls "moat hosts show" until ip's record has a deferred
// message (the record is written as the tarpit session ends).
func waitTold(t *testing.T, m *Moat, ip string) toldRecord {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := told(t, m, ip)
		if r.Told != nil && r.Told.Deferred > 0 {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("moat hosts show %s records no deferred message within 20s: %+v", ip, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestListedSenderKeepsItsMail(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(`blacklist = ["127.0.0.41/32"]

[greylist]
greet_delay = "100ms"

[tarpit]
stutter = "2ms"
`), "{{backend}}", b.Addr)
	m.CLI(t, "hosts", "black", "127.0.0.40")

	for i, tc := range []struct{ ip, how string }{
		{"127.0.0.40", "moat hosts black"},
		{"127.0.0.41", "the config's blacklist"},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			s := StartSender(t, m.Addr, tc.ip)
			subject := "listed by " + tc.how
			s.Send(t, "bob@sender.test", alice, subject, "a message that must not be lost")

			// The tarpit's stutter, then 451 at the end of DATA: the
			// sender defers and keeps the message.
			s.WaitLog(t, `status=deferred .*451 4\.7\.1 Client host deferred: .*moat-listed.*end of DATA`, 60*time.Second)
			if s.QueueEmpty() {
				t.Fatal("the sender's queue is empty after the deferral: the message is lost")
			}
			if n := s.CountLog(`status=(bounced|sent)`); n != 0 {
				t.Errorf("the sender logged %d bounced or sent lines, want none:\n%s", n, tail(s.Log(), 20))
			}
			if n := b.AllMessages(); n != i {
				t.Fatalf("the backend has %d messages, want %d: none from the black host", n, i)
			}

			// The operator sees what the listing cost, with the envelope.
			r := waitTold(t, m, tc.ip)
			if r.Class != "black" || len(r.Told.Sessions) == 0 {
				t.Fatalf("hosts show %s: %+v", tc.ip, r)
			}
			msg := r.Told.Sessions[0].Messages[0]
			if msg.Told != "deferred" || msg.Sender != "bob@sender.test" || strings.Join(msg.Rcpts, ",") != alice {
				t.Errorf("recorded message %+v, want deferred, bob@sender.test to %s", msg, alice)
			}
			if list := m.CLI(t, "hosts", "list", "--class", "black"); !strings.Contains(list, "deferred") {
				t.Errorf("hosts list --class black does not count deferred messages:\n%s", list)
			}

			// Released: the next retry is delivered, exactly once.
			m.CLI(t, "hosts", "white", tc.ip)
			s.Flush(t)
			b.WaitMessages(t, alice, i+1, 60*time.Second)
			s.WaitQueueEmpty(t, 30*time.Second)
			s.WaitLog(t, `status=sent`, 10*time.Second)
			if n := countSubject(b, alice, subject); n != 1 {
				t.Errorf("alice has %d copies of %q, want exactly 1", n, subject)
			}
			if n := b.AllMessages(); n != i+1 {
				t.Errorf("the backend has %d messages, want %d", n, i+1)
			}
		})
	}
	if st := m.CLI(t, "status"); !strings.Contains(st, "deferred (4xx)") || strings.Contains(st, " 0 deferred (4xx)") {
		t.Errorf("moat status does not count the deferred messages:\n%s", st)
	}
}

// A trap hitter is proven a bot: its first attempt names the trap and is
// deferred like any greylisted recipient; its retry meets the tarpit, is
// told "queued" and believes it delivered; nothing reaches the backend.
func TestTrapHitterToldQueued(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(`
[greylist]
greet_delay = "100ms"

[traps]
addresses = ["trap@example.test"]

[tarpit]
stutter = "2ms"
`), "{{backend}}", b.Addr)
	s := StartSender(t, m.Addr, "127.0.0.42")
	s.Send(t, "bot@spam.test", "trap@example.test", "spam", "buy now")
	s.WaitLog(t, `status=deferred`, 30*time.Second)
	if class := m.Hosts(t)["127.0.0.42"]; class != "black" {
		t.Fatalf("after the trap hit 127.0.0.42 is %q, want black", class)
	}
	s.Flush(t)
	s.WaitLog(t, `status=sent .*250 2\.0\.0 Ok: queued as`, 60*time.Second)
	s.WaitQueueEmpty(t, 10*time.Second)
	if n := b.AllMessages(); n != 0 {
		t.Errorf("the backend has %d messages, want none", n)
	}
	if addrs := b.ClientAddrs(); len(addrs) != 0 {
		t.Errorf("the backend saw connections from %q, want none", addrs)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := told(t, m, "127.0.0.42")
		if r.Told != nil && r.Told.Dropped == 1 && r.Told.Deferred == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts show 127.0.0.42: %+v, want one message dropped", r.Told)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Observe mode, with real Postfix on both sides: a first-time sender is
// delivered at once and its session's log line says enforce mode would
// have greylisted it; a trap hitter's message is delivered and the host is
// recorded black. After the switch to enforce mode (a reload), the
// trapped host is tarpitted.
func TestObserveMode(t *testing.T) {
	b := StartBackend(t, true, alice, "trap@example.test")
	conf := `mode = "observe"

[greylist]
greet_delay = "200ms"
min_retry = "1h"

[traps]
addresses = ["trap@example.test"]

[tarpit]
stutter = "2ms"
`
	m := StartMoat(t, moatConfig(conf), "{{backend}}", b.Addr)

	first := StartSender(t, m.Addr, "127.0.0.50")
	first.Send(t, "carol@first.test", alice, "first sight", "hello")
	b.WaitMessages(t, alice, 1, 30*time.Second)
	first.WaitQueueEmpty(t, 10*time.Second)
	if n := first.CountLog(`status=deferred`); n != 0 {
		t.Errorf("the first-time sender was deferred %d times in observe mode:\n%s", n, tail(first.Log(), 20))
	}
	waitRecord(t, m, "a session of 127.0.0.50 saying it would have been greylisted", func(rec map[string]any) bool {
		return rec["msg"] == "session" && rec["client"] == "127.0.0.50" && rec["would"] == "greylisted"
	})
	if class := m.Hosts(t)["127.0.0.50"]; class != "grey" {
		t.Errorf("127.0.0.50 is %q after observation, want grey (with history)", class)
	}

	bot := StartSender(t, m.Addr, "127.0.0.51")
	bot.Send(t, "bot@spam.test", "trap@example.test", "observed spam", "buy now")
	b.WaitMessages(t, "trap@example.test", 1, 30*time.Second)
	bot.WaitQueueEmpty(t, 10*time.Second)
	waitRecord(t, m, "a session of 127.0.0.51 saying it would have been tarpitted", func(rec map[string]any) bool {
		return rec["msg"] == "session" && rec["client"] == "127.0.0.51" && rec["would"] == "tarpit (trap)"
	})
	if class := m.Hosts(t)["127.0.0.51"]; class != "black" {
		t.Fatalf("the trap hitter is %q in observe mode, want recorded black", class)
	}
	var st struct {
		Mode  string           `json:"mode"`
		Would map[string]int64 `json:"would"`
	}
	if err := json.Unmarshal([]byte(m.CLI(t, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != "observe" || st.Would["greylisted"] < 1 || st.Would["tarpit (trap)"] < 1 {
		t.Errorf("status: mode %q, would %v; want observe with the greylisted and trapped sessions counted", st.Mode, st.Would)
	}

	// Enforce, by a reload: what was learnt stays; the trapped host
	// meets the tarpit.
	if err := os.WriteFile(m.Config, []byte(strings.Replace(readFile(t, m.Config), `mode = "observe"`, `mode = "enforce"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := m.CLI(t, "reload"); !strings.Contains(out, "mode") {
		t.Errorf("moat reload does not say it applied mode: %q", out)
	}
	before := len(b.Messages("trap@example.test"))
	bot.Send(t, "bot@spam.test", "trap@example.test", "enforced spam", "buy now")
	bot.WaitLog(t, `status=sent .*250 2\.0\.0 Ok: queued as`, 60*time.Second)
	waitRecord(t, m, "a tarpit session of 127.0.0.51", func(rec map[string]any) bool {
		return rec["msg"] == "session" && rec["client"] == "127.0.0.51" && rec["class"] == "black" && rec["verdict"] == "tarpit"
	})
	if n := len(b.Messages("trap@example.test")); n != before {
		t.Errorf("the backend took the trapped host's message in enforce mode (%d messages, were %d)", n, before)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
