package server

import (
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The never-relay property: nothing a black host sends ever reaches the
// backend. Thousands of random and adversarial dialogs from black hosts,
// early talkers and trap hitters run against a live server whose backend
// counts connections; the count must stay zero.
//
// MOAT_NORELAY_DIALOGS sets the number of dialogs (default 2000) and
// MOAT_NORELAY_SEED the random seed (default: the time, printed so a
// failure can be replayed).

var relayDomains = []string{"foreign.example", "victim.example", "[192.0.2.1]", "example.test", "EXAMPLE.TEST", "localhost"}

// hostileLine returns one command a spam bot or an attacker might send.
func hostileLine(r *rand.Rand) string {
	dom := relayDomains[r.Intn(len(relayDomains))]
	switch r.Intn(24) {
	case 0:
		return "EHLO bot" + strconv.Itoa(r.Intn(1000))
	case 1:
		return "helo " + dom
	case 2:
		return "MAIL FROM:<spammer@" + dom + ">"
	case 3:
		return "mail from: <>"
	case 4:
		return "RCPT TO:<victim" + strconv.Itoa(r.Intn(100)) + "@" + dom + ">"
	case 5:
		return "rCpT tO:<@relay.example:victim@" + dom + ">"
	case 6:
		return "RCPT TO:<victim%" + dom + "@example.test>"
	case 7:
		return "RCPT TO:<\"quoted@local\"@" + dom + ">"
	case 8:
		return "DATA"
	case 9:
		return "Subject: buy now\r\n\r\nbody\n.\nMAIL FROM:<smuggled@" + dom + ">\r\nRCPT TO:<x@" + dom + ">\r\nDATA\r\nsmuggled\r\n.\r\n"
	case 10:
		return ".\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@" + dom + ">\r\nDATA\r\n.\r"
	case 11:
		return "BDAT 20 LAST\r\n12345678901234567890"
	case 12:
		return "STARTTLS"
	case 13:
		return "AUTH PLAIN AGFkbWluAGFkbWlu"
	case 14:
		return "PROXY TCP4 10.0.0.1 127.0.0.1 1 25"
	case 15:
		return "RSET"
	case 16:
		return "QUIT"
	case 17:
		return strings.Repeat("A", r.Intn(5000))
	case 18:
		b := make([]byte, r.Intn(300))
		r.Read(b)
		return string(b)
	case 19:
		return "VRFY postmaster"
	case 20:
		return "XCLIENT ADDR=192.0.2.1"
	case 21:
		return "\x00EHLO nul"
	case 22:
		// Huge recipient list, pipelined.
		var b strings.Builder
		for i := 0; i < 200; i++ {
			fmt.Fprintf(&b, "RCPT TO:<v%d@%s>\r\n", i, dom)
		}
		return strings.TrimSuffix(b.String(), "\r\n")
	default:
		return "NOOP"
	}
}

func hostileDialog(r *rand.Rand) []byte {
	var b strings.Builder
	n := 1 + r.Intn(30)
	for i := 0; i < n; i++ {
		b.WriteString(hostileLine(r))
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

func TestNeverRelaysForBlackHosts(t *testing.T) {
	dialogs := 2000
	if v, err := strconv.Atoi(os.Getenv("MOAT_NORELAY_DIALOGS")); err == nil {
		dialogs = v
	}
	seed := time.Now().UnixNano()
	if v, err := strconv.ParseInt(os.Getenv("MOAT_NORELAY_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (MOAT_NORELAY_SEED), %d dialogs", seed, dialogs)

	w := startWorld(t, worldConfig{
		minRetry:  time.Minute,
		traps:     []string{"trap@example.test"},
		blacklist: []string{"127.1.0.0/16"},
		tarpitMax: 500,
	})
	// Black hosts: the static blacklist, random dialogs, pipelined or
	// line by line, sometimes before the banner.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 40)
	for i := 0; i < dialogs; i++ {
		r := rand.New(rand.NewSource(seed + int64(i)))
		client := fmt.Sprintf("127.1.%d.%d", 1+r.Intn(250), 1+r.Intn(250))
		payload := hostileDialog(r)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			blast(t, w.addr, client, payload, r.Intn(2) == 0)
		}()
	}
	wg.Wait()

	// Grey hosts that turn black mid-session: each first earns a triplet
	// that would pass, then names a trap (or talks early) before using it.
	greys := dialogs / 10
	for i := 0; i < greys; i++ {
		client := fmt.Sprintf("127.2.%d.%d", i/250, 1+i%250)
		c, br := w.dial(client)
		readBanner(t, c, br)
		io.WriteString(c, "EHLO g\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<real@example.test>\r\nQUIT\r\n")
		io.Copy(io.Discard, br)
		c.Close()
	}
	w.clock.Advance(5 * time.Minute)
	for i := 0; i < greys; i++ {
		r := rand.New(rand.NewSource(seed + int64(dialogs+i)))
		client := fmt.Sprintf("127.2.%d.%d", i/250, 1+i%250)
		var first string
		if i%2 == 0 {
			first = "MAIL FROM:<trap@example.test>\r\n"
		} else {
			first = "MAIL FROM:<s@sender.example>\r\nRCPT TO:<trap@example.test>\r\n"
		}
		payload := []byte("EHLO g\r\n" + first + "RCPT TO:<real@example.test>\r\nDATA\r\nSubject: x\r\n\r\nx\r\n.\r\n" + string(hostileDialog(r)))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			blast(t, w.addr, client, payload, false)
		}()
	}
	wg.Wait()

	conns, msgs, _ := w.backend.stats()
	if conns != 0 || msgs != 0 {
		t.Fatalf("the backend received %d connections and %d messages from black hosts; want none", conns, msgs)
	}
	// The property is only meaningful if those hosts did get through to
	// the point of trying: every trap hitter must now be black.
	for i := 0; i < greys; i++ {
		a := fmt.Sprintf("127.2.%d.%d", i/250, 1+i%250)
		v, err := w.eng.Classify(mustAddr(t, a))
		if err != nil || v.Class.String() != "black" {
			t.Fatalf("%s: class %s (%v), want black after a trap hit", a, v.Class, err)
		}
	}
	// And a grey host that does everything right does reach the backend,
	// so a broken backend path cannot make this test pass.
	c, br := w.dial("127.3.0.1")
	readBanner(t, c, br)
	io.WriteString(c, "EHLO ok\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<real@example.test>\r\nQUIT\r\n")
	io.Copy(io.Discard, br)
	c.Close()
	w.clock.Advance(5 * time.Minute)
	c, br = w.dial("127.3.0.1")
	readBanner(t, c, br)
	io.WriteString(c, "EHLO ok\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<real@example.test>\r\nQUIT\r\n")
	io.Copy(io.Discard, br)
	c.Close()
	if conns, _, _ := w.backend.stats(); conns != 1 {
		t.Fatalf("a good retry made %d backend connections, want 1", conns)
	}
}

func readBanner(t *testing.T, c net.Conn, br interface{ ReadString(byte) (string, error) }) {
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("banner: %v", err)
		}
		if strings.HasPrefix(l, "220 ") {
			return
		}
	}
}

// blast sends payload (at once, or before the banner when early is set)
// and reads what comes back for a short while. It does not wait for the
// stuttered replies to finish: the property is about what reaches the
// backend, not about the tarpit's pace.
func blast(t *testing.T, addr, client string, payload []byte, early bool) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Errorf("connect from %s: %v", client, err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if !early {
		buf := make([]byte, 64)
		c.Read(buf)
	}
	c.Write(payload)
	io.Copy(io.Discard, c)
}
