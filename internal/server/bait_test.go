package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/server/servertest"
	"moat/internal/store"
	"moat/internal/traps"
)

// TestBaitBlacklistsSenderAndHarvester: a harvester at 127.0.0.31 fetches
// the bait page; a spammer at 127.0.0.32 then writes to the address it
// minted. The spammer's RCPT looks like any greylisted one, and both hosts
// are black afterwards: the sender for the trap hit, the harvester for
// the harvest the address records.
func TestBaitBlacklistsSenderAndHarvester(t *testing.T) {
	w := servertest.Start(t, servertest.Config{})
	b, err := traps.NewBait([]byte("a key for this test only, 32 by."), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	w.Eng.Traps().SetBait(b)

	page := httptest.NewServer(&traps.Page{Bait: b, Count: 2, Clock: w.Clock})
	defer page.Close()
	harvester := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.31")}}
		return d.DialContext(ctx, network, addr)
	}}}
	resp, err := harvester.Get(page.URL + "/staff/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`mailto:(b-[a-z2-7]+@example\.test)`).FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("no bait address on the page:\n%s", body)
	}
	minted := m[1]

	c, br := w.Dial("127.0.0.32")
	defer c.Close()
	expect := func(send, want string) {
		t.Helper()
		if send != "" {
			io.WriteString(c, send+"\r\n")
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", send, err)
			}
			if len(line) < 4 || line[3] != '-' {
				if !strings.HasPrefix(line, want) {
					t.Fatalf("%s: got %q, want %q", send, line, want)
				}
				return
			}
		}
	}
	expect("", "220 ")
	expect("EHLO spam.example", "250 ")
	expect("MAIL FROM:<x@spam.example>", "250 ")
	expect("RCPT TO:<"+strings.ToUpper(minted)+">", "451 4.7.1")

	reasons := map[string]string{
		"127.0.0.32": "trap hit <" + minted + ">",
		"127.0.0.31": "harvested bait <" + minted + "> at 2026-01-01T00:00:00Z",
	}
	for addr, want := range reasons {
		var h store.Host
		deadline := time.Now().Add(10 * time.Second)
		for {
			var ok bool
			h, ok, err = w.Store.Lookup(netip.MustParseAddr(addr))
			if err != nil {
				t.Fatal(err)
			}
			if ok && h.Class == store.Black || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if h.Class != store.Black || h.Reason != want {
			t.Errorf("%s: %s %q, want black %q", addr, h.Class, h.Reason, want)
		}
	}
	if n := len(w.Backend.Conns()); n != 0 {
		t.Errorf("the backend saw %d connections, want none", n)
	}
}
