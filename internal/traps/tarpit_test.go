package traps_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"moat/internal/smtp"
	"moat/internal/store/bolt"
	"moat/internal/tarpit"
	"moat/internal/traps"
)

// TestMiningFromTarpitSessions runs bots through a real tarpit: three
// hosts hand it their target lists, and the one local address all three
// asked for becomes a candidate; the foreign relay victims do not, nor the
// address only one bot knew.
func TestMiningFromTarpitSessions(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	set, err := traps.New(st, []string{"trap@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := traps.NewMiner(traps.MinerConfig{}, st, set)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := tarpit.New(tarpit.Config{Hostname: "mx.test", Stutter: time.Millisecond, MaxConns: 10},
		tarpit.Events{Rcpt: func(_ tarpit.Conn, client netip.Addr, rcpt string) { m.TarpitRcpt(client, rcpt) }})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			tp.Hold(c, ap.Addr().Unmap(), tarpit.Start{})
		}
	}()

	bots := []struct {
		from  string
		rcpts []string
	}{
		{"127.0.0.41", []string{"sales@example.org", "victim@foreign.example", "ceo@example.org"}},
		{"127.0.0.42", []string{"victim@foreign.example", "SALES@example.org"}},
		{"127.0.0.43", []string{"sales@example.org", "victim@foreign.example"}},
	}
	for _, b := range bots {
		runBot(t, ln.Addr().String(), b.from, b.rcpts)
	}

	cs, err := m.Candidates()
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Addr != "sales@example.org" {
		t.Fatalf("candidates = %+v, want sales@example.org only", cs)
	}
	want := []netip.Addr{netip.MustParseAddr("127.0.0.41"), netip.MustParseAddr("127.0.0.42"), netip.MustParseAddr("127.0.0.43")}
	if fmt.Sprint(cs[0].Hosts) != fmt.Sprint(want) || cs[0].Sources[traps.OriginTarpit] != 3 {
		t.Errorf("evidence = %+v, want the three bots from the tarpit", cs[0])
	}
	if _, ok, _ := m.Evidence("victim@foreign.example"); ok {
		t.Error("a foreign relay victim was recorded")
	}
}

// runBot speaks to the tarpit from the address from, and waits for every
// reply, so the RCPT events have happened when it returns.
func runBot(t *testing.T, addr, from string, rcpts []string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	expect := func(cmd string, code int) {
		t.Helper()
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		r, err := smtp.ReadReply(br, 20)
		if err != nil || r.Code != code {
			t.Fatalf("%s: %s: got %d %v, want %d", from, cmd, r.Code, err, code)
		}
	}
	expect("", 220)
	expect("EHLO bot.example", 250)
	expect("MAIL FROM:<x@spam.example>", 250)
	for _, r := range rcpts {
		expect("RCPT TO:<"+r+">", 250)
	}
	expect("QUIT", 221)
}
