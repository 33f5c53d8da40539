package sim

import (
	"math"
	"strings"
	"testing"
	"time"

	"moat/internal/config"
)

// TestDefaultModelFollowsItsSources holds the embedded model to the
// measurements docs/evaluate.md cites: the shares of greylisted hosts
// that never retry (36%) and that retry too soon (31.5%) measured in
// "Experiences with Greylisting" (CEAS 2005), the retry schedules of
// RFC 5321, Postfix and Exim as they ship.
func TestDefaultModelFollowsItsSources(t *testing.T) {
	m := DefaultModel()
	var total, never, soon float64
	for _, b := range m.Bots {
		total += b.MessagesPerDay
		switch {
		case b.Retry == "":
			never += b.MessagesPerDay
		case b.rule[len(b.rule)-1].Until < time.Minute:
			soon += b.MessagesPerDay
		}
	}
	if math.Abs(never/total-0.36) > 0.001 || math.Abs(soon/total-0.315) > 0.001 {
		t.Errorf("bots that never retry %.3f, too soon %.3f; the study measured 0.36 and 0.315", never/total, soon/total)
	}
	want := map[string]string{
		"rfc5321": "F,5d,30m",                        // RFC 5321 4.5.4.1: at least 30 minutes, give up after 4-5 days
		"postfix": "G,5d,300s,2",                     // minimal_backoff_time 300s, doubling, maximal_queue_lifetime 5d
		"exim":    "F,2h,15m; G,16h,1h,1.5; F,4d,6h", // the retry rule of Exim's default configuration
	}
	for name, rule := range want {
		s, ok := m.legit(name)
		if !ok || s.Retry != rule {
			t.Errorf("legit %s: retry %q, want %q", name, s.Retry, rule)
		}
	}
	if s, _ := m.legit("postfix"); s.MaxInterval.Duration != 4000*time.Second || s.QueueRun.Duration != 300*time.Second {
		t.Errorf("postfix: max_interval %s, queue_run %s; want maximal_backoff_time 4000s, queue_run_delay 300s", s.MaxInterval, s.QueueRun)
	}
}

// TestScheduleNext: the retry times each kind of rule gives.
func TestScheduleNext(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		s    Schedule
		want []time.Duration // offsets of the retries from the first attempt
	}{
		{"fixed until give-up", Schedule{Retry: "F,2h,30m"}, []time.Duration{30 * time.Minute, time.Hour, 90 * time.Minute}},
		{"geometric with a cap", Schedule{Retry: "G,3h,5m,2", MaxInterval: dur64(40 * time.Minute)},
			[]time.Duration{5 * time.Minute, 15 * time.Minute, 35 * time.Minute, 75 * time.Minute, 115 * time.Minute, 155 * time.Minute}},
		{"Exim's phases", Schedule{Retry: "F,1h,15m; G,4h,1h,1.5; F,6h,1h"},
			// The interval of the phase a retry fails in sets the next
			// one, as in Exim: the one at 3h30m waits 2h15m.
			[]time.Duration{15 * time.Minute, 30 * time.Minute, 45 * time.Minute, time.Hour, 2 * time.Hour, 3*time.Hour + 30*time.Minute, 5*time.Hour + 45*time.Minute}},
		{"first retry sooner", Schedule{Retry: "F,1h,20m", FirstRetry: dur64(time.Minute)}, []time.Duration{time.Minute, 21 * time.Minute, 41 * time.Minute}},
		{"queue runs", Schedule{Retry: "F,1h,7m", QueueRun: dur64(5 * time.Minute)}, []time.Duration{10 * time.Minute, 20 * time.Minute, 30 * time.Minute, 40 * time.Minute, 50 * time.Minute}},
		{"never", Schedule{}, nil},
	}
	for _, tt := range tests {
		if err := tt.s.check("test"); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []time.Duration
		last := t0
		for n := 0; n < 20; n++ {
			next, ok := tt.s.next(t0, last, n, 0)
			if !ok {
				break
			}
			got = append(got, next.Sub(t0))
			last = next
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: retries at %v, want %v", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: retries at %v, want %v", tt.name, got, tt.want)
				break
			}
		}
	}
}

// TestModelErrors: a broken model is refused with the key and the fix.
func TestModelErrors(t *testing.T) {
	base := "days = 1\nstart = \"2026-03-02T00:00:00Z\"\n[site]\ndomain = \"moat.example\"\nmailboxes = 10\n"
	legit := "[[legit]]\nname = \"a\"\nmessages_per_day = 1\nsenders = 1\nhosts = 1\nnetworks = 1\nrcpts = 1\nretry = \"F,1d,1h\"\n"
	tests := []struct{ text, want string }{
		{"dayz = 3\n" + base + legit, "model: unknown key dayz: check its spelling against docs/evaluate.md"},
		{"warmup = 5\n" + base + legit, "model: warmup: a TOML integer where a string is expected"},
		{strings.Replace(base, "days = 1", "days = 0", 1) + legit, "model: days: 0: want 1..365"},
		{base, "nothing sends"},
		{base + strings.Replace(legit, "F,1d,1h", "F,1d", 1), `model: legit[0].retry: "F,1d"`},
		{base + strings.Replace(legit, `retry = "F,1d,1h"`, `retry = ""`, 1), "a legitimate sender retries"},
		{base + strings.Replace(legit, "networks = 1", "networks = 2", 1), "model: legit[0]: hosts 1 over networks 2"},
		{base + legit + "[[bots]]\nname = \"b\"\nmessages_per_day = 1\nhosts = 1\nnetworks = 1\nrcpts = 1\ntrap_share = 0.5\n", "model: bots[0].trap_share (b): site.traps is empty"},
		{base + legit + "[[bots]]\nname = \"a\"\nmessages_per_day = 1\nhosts = 1\nnetworks = 1\nrcpts = 1\n", `model: bots[0].name: "a" is used twice`},
		{"log_retry = \"b\"\n" + base + legit, `model: log_retry: "b": no [[legit]] of that name`},
	}
	for _, tt := range tests {
		_, err := ParseModel([]byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseModel: error %v, want one containing %q", err, tt.want)
		}
	}
	if _, err := ParseModel([]byte(base + legit)); err != nil {
		t.Errorf("a minimal model: %v", err)
	}
}

// TestTraceIsReproducible: a seed gives the same messages every time, and
// another seed other ones.
func TestTraceIsReproducible(t *testing.T) {
	m := DefaultModel()
	m.Days = 1
	a, b, c := NewTrace(m, 7), NewTrace(m, 7), NewTrace(m, 8)
	if len(a.Messages) != len(b.Messages) {
		t.Fatalf("same seed, %d and %d messages", len(a.Messages), len(b.Messages))
	}
	for i := range a.Messages {
		x, y := a.Messages[i], b.Messages[i]
		if !x.At.Equal(y.At) || x.Sender != y.Sender || strings.Join(x.Rcpts, ",") != strings.Join(y.Rcpts, ",") || x.Host != y.Host {
			t.Fatalf("message %d differs: %+v and %+v", i, x, y)
		}
	}
	if len(c.Messages) == len(a.Messages) && c.Messages[0].At.Equal(a.Messages[0].At) {
		t.Errorf("seeds 7 and 8 gave the same trace")
	}
	// About the model's rates: 1,000 legitimate and 10,000 bot messages
	// a day.
	var legit int
	for _, msg := range a.Messages {
		if msg.Kind == Legit {
			legit++
		}
	}
	if legit < 900 || legit > 1100 || len(a.Messages)-legit < 9700 || len(a.Messages)-legit > 10300 {
		t.Errorf("%d legitimate and %d bot messages in a day", legit, len(a.Messages)-legit)
	}
}

// TestAddressPlan: pools are spread over their networks, kinds of sender
// never share a network, and the SPF resolver authorises a pool's
// networks only.
func TestAddressPlan(t *testing.T) {
	p := Pool{Hosts: 10, Networks: 4}
	a0, a4 := addr(Legit, 1, p, 0), addr(Legit, 1, p, 4)
	if n0, _ := a0.Prefix(24); !n0.Contains(a4) || a0 == a4 {
		t.Errorf("hosts 0 and 4 of 4 networks: %s and %s, want two hosts of one /24", a0, a4)
	}
	if n0, _ := a0.Prefix(24); n0.Contains(addr(Legit, 1, p, 1)) || n0.Contains(addr(Legit, 2, p, 0)) || n0.Contains(addr(Spam, 1, p, 0)) {
		t.Errorf("another network, type or kind shares %s", n0)
	}
	m := DefaultModel()
	res := newSPFResolver(m)
	txt, err := res.LookupTXT(nil, senderDomain("gmail-like"))
	if err != nil || len(txt) != 1 || !strings.HasPrefix(txt[0], "v=spf1 ip4:") || !strings.HasSuffix(txt[0], " -all") {
		t.Errorf("gmail-like SPF: %q %v", txt, err)
	}
	if _, err := res.LookupTXT(nil, senderDomain("postfix")); err == nil {
		t.Errorf("postfix senders publish no SPF in the model, the resolver gave one")
	}
}

func dur64(d time.Duration) config.Duration { return config.Duration{Duration: d} }
