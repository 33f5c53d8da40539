package server_test

import (
	"bufio"
	"net/netip"
	"strings"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/reputation"
	"moat/internal/reputation/dnstest"
	"moat/internal/server/servertest"
	"moat/internal/store"
)

// dnsWorld is a world whose engine asks an in-process DNS server for
// 127.0.0.0/8 clients: 127.0.0.21 is on a block list, 127.0.0.22 on an
// allow list, 127.0.0.23 on neither, 127.0.0.24 on a list that is too slow.
func dnsWorld(t *testing.T, greet time.Duration) *servertest.World {
	srv := dnstest.New(t)
	srv.Add(t, "21.0.0.127.zen.test. 300 IN A 127.0.0.2", "22.0.0.127.wl.test. 300 IN A 127.0.10.2")
	srv.Silent("slow.test")
	var sites []reputation.Site
	for _, s := range []string{"zen.test=127.0.0.[2..11]*3", "wl.test=127.0.[0..255].[1..3]*-5", "slow.test*5"} {
		site, err := reputation.ParseSite(s)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, site)
	}
	d, err := reputation.NewDNSBL(reputation.DNSBLConfig{Sites: sites, Servers: []string{srv.Addr}, Timeout: greet / 2})
	if err != nil {
		t.Fatal(err)
	}
	w := servertest.Start(t, servertest.Config{GreetDelay: greet, MinRetry: time.Minute})
	w.Eng.SetReputation(classify.Reputation{DNSBL: d})
	return w
}

func expectLine(t *testing.T, br *bufio.Reader, prefix string) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, prefix) {
		t.Fatalf("read %q, %v; want a line starting %q", line, err, prefix)
	}
	return line
}

func TestDNSBLBlackGoesToTarpit(t *testing.T) {
	w := dnsWorld(t, 300*time.Millisecond)
	c, br := w.Dial("127.0.0.21")
	defer c.Close()
	expectLine(t, br, "220-mx.test")
	// The lookup answered within the greet delay: the rest of the
	// session is the tarpit's fake relay, which never reaches the backend.
	expectLine(t, br, "220 ")
	c.Write([]byte("EHLO x\r\n"))
	expectLine(t, br, "250")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "250 ") {
			break
		}
	}
	c.Write([]byte("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\n"))
	expectLine(t, br, "250")
	expectLine(t, br, "250") // the tarpit accepts everything
	if conns := len(w.Backend.Conns()); conns != 0 {
		t.Errorf("backend got %d connections from a listed host", conns)
	}
	h, ok, _ := w.Store.Host(store.HostPrefix(netip.MustParseAddr("127.0.0.21")))
	if !ok || h.Class != store.Black || !strings.Contains(h.Reason, "zen.test=127.0.0.2(+3)") {
		t.Errorf("stored %+v %v, want black with the zone", h, ok)
	}
}

func TestDNSWLSkipsGreylisting(t *testing.T) {
	w := dnsWorld(t, 300*time.Millisecond)
	c, br := w.Dial("127.0.0.22")
	defer c.Close()
	expectLine(t, br, "220-mx.test")
	expectLine(t, br, "220 mx.test")
	for _, cmd := range []string{"EHLO x", "MAIL FROM:<a@b.example>"} {
		c.Write([]byte(cmd + "\r\n"))
		for {
			line := expectLine(t, br, "250")
			if strings.HasPrefix(line, "250 ") {
				break
			}
		}
	}
	c.Write([]byte("RCPT TO:<u@example.test>\r\n"))
	expectLine(t, br, "250 2.1.5") // the backend's reply: no 451 first
	if conns := len(w.Backend.Conns()); conns != 1 {
		t.Errorf("backend got %d connections, want the hand-off", conns)
	}
	// The next connection is spliced at once.
	c2, br2 := w.Dial("127.0.0.22")
	defer c2.Close()
	expectLine(t, br2, "220 backend.test")
}

func TestDNSBLNeitherAndSlowStayGrey(t *testing.T) {
	w := dnsWorld(t, 300*time.Millisecond)
	for _, client := range []string{"127.0.0.23", "127.0.0.24"} {
		c, br := w.Dial(client)
		expectLine(t, br, "220-mx.test")
		expectLine(t, br, "220 mx.test") // a silent list never holds the banner
		c.Write([]byte("EHLO x\r\n"))
		for !strings.HasPrefix(expectLine(t, br, "250"), "250 ") {
		}
		c.Write([]byte("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\n"))
		expectLine(t, br, "250")
		expectLine(t, br, "451 4.7.1")
		c.Close()
	}
}
