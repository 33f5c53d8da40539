package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/admin"
	"moat/internal/demo"
)

// TestDemoSmoke runs the demo for 30 seconds, as a newcomer would, then
// asks "moat status" and "moat hosts list" what happened: legitimate
// senders are white, bots that never came back or came back too soon are
// grey, early talkers, trap hitters and the harvester black; and the
// backend got the legitimate messages and nothing else.
func TestDemoSmoke(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := demo.Start(ctx, demo.Options{Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	time.Sleep(30 * time.Second)

	var hosts []admin.HostView
	if err := json.Unmarshal([]byte(runMoat(t, d.ConfigPath, "hosts", "list", "--json")), &hosts); err != nil {
		t.Fatal(err)
	}
	nets := map[string]netip.Prefix{
		"legit": netip.MustParsePrefix("127.1.0.0/24"), "bot": netip.MustParsePrefix("127.2.0.0/24"),
		"hasty": netip.MustParsePrefix("127.3.0.0/24"), "early": netip.MustParsePrefix("127.4.0.0/24"),
		"trap": netip.MustParsePrefix("127.5.0.0/24"), "harvest": netip.MustParsePrefix("127.6.0.0/24"),
	}
	kind := func(ip string) string {
		a := netip.MustParseAddr(ip)
		for k, n := range nets {
			if n.Contains(a) {
				return k
			}
		}
		return "?"
	}
	seen := map[string]map[string]int{} // class → kind → hosts
	for _, h := range hosts {
		if seen[h.Class] == nil {
			seen[h.Class] = map[string]int{}
		}
		seen[h.Class][kind(h.IP)]++
	}
	t.Logf("hosts by class and kind of sender: %v", seen)
	if seen["white"]["legit"] != 3 || len(seen["white"]) != 1 {
		t.Errorf("white: %v, want the 3 legitimate senders and nobody else", seen["white"])
	}
	if seen["grey"]["bot"] == 0 || seen["grey"]["hasty"] == 0 || seen["grey"]["legit"] != 0 {
		t.Errorf("grey: %v, want bots that never came back and bots that came back too soon", seen["grey"])
	}
	if seen["black"]["early"] == 0 || seen["black"]["trap"] == 0 || seen["black"]["harvest"] != 2 || seen["black"]["legit"] != 0 {
		t.Errorf("black: %v, want early talkers, trap hitters and the harvester's two hosts", seen["black"])
	}

	status := runMoat(t, d.ConfigPath, "status")
	for _, want := range []string{"moat: running", "hosts: 3 white,", "traps: 1 addresses"} {
		if !strings.Contains(status, want) {
			t.Errorf("moat status lacks %q:\n%s", want, status)
		}
	}

	msgs := d.Backend.Messages()
	delivered := d.Traffic.Delivered()
	if delivered < 3 || int64(len(msgs)) < delivered {
		t.Errorf("the backend got %d messages, the legitimate senders were told 250 for %d: want at least one each", len(msgs), delivered)
	}
	users := map[string]bool{"alice@" + demo.Domain: true, "bob@" + demo.Domain: true, "carol@" + demo.Domain: true}
	for _, m := range msgs {
		if !nets["legit"].Contains(m.Client) || !strings.HasPrefix(m.From, "news") || len(m.Rcpts) != 1 || !users[m.Rcpts[0]] {
			t.Errorf("the backend got a message from %s <%s> to %v: not a legitimate sender's", m.Client, m.From, m.Rcpts)
		}
	}

	if err := d.Stop(); err != nil {
		t.Errorf("stopping the demo: %v", err)
	}
	if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
		t.Errorf("the demo left %s behind (%v)", d.Dir, err)
	}
}

// The command prints where to look, and on its end removes what it made.
func TestDemoCommand(t *testing.T) {
	root := rootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"demo", "--for", "3s", "--quiet"})
	if err := root.Execute(); err != nil {
		t.Fatalf("moat demo: %v\n%s", err, out.String())
	}
	text := out.String()
	url := regexp.MustCompile(`dashboard:  (http://127\.0\.0\.1:\d+/dashboard/#token=[0-9a-f]{64})\n`).FindStringSubmatch(text)
	dir := regexp.MustCompile(`moat demo stopped; (\S+) removed`).FindStringSubmatch(text)
	if url == nil || dir == nil || !strings.Contains(text, "status:     moat -c "+dir[1]+"/moat.toml status") {
		t.Fatalf("moat demo printed:\n%s", text)
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("moat demo left %s behind (%v)", dir[1], err)
	}
}
