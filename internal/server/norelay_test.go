package server_test

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/server/servertest"
	"moat/internal/store"
)

// The never-relay property: nothing a black host sends ever reaches the
// backend. Thousands of random and adversarial dialogs from black hosts,
// early talkers and trap hitters run against a live server whose backend
// counts connections; the count must stay zero. Then random dialogs go on
// after a greylist pass, with the backend attached, while traps are named
// on parallel connections and the operator blacklists hosts: no RCPT and
// no message reaches the backend that the client sent after its host was
// black, and nothing reaches it that moat did not write itself.
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

	w := servertest.Start(t, servertest.Config{
		MinRetry:  time.Minute,
		Traps:     []string{"trap@example.test"},
		Blacklist: []string{"127.1.0.0/16"},
		TarpitMax: 500,
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
			blast(t, w.Addr, client, payload, r.Intn(2) == 0)
		}()
	}
	wg.Wait()

	// Grey hosts that turn black mid-session: each first earns a triplet
	// that would pass, then names a trap (or talks early) before using it.
	greys := dialogs / 10
	for i := 0; i < greys; i++ {
		client := fmt.Sprintf("127.2.%d.%d", i/250, 1+i%250)
		c, br := w.Dial(client)
		readBanner(t, c, br)
		io.WriteString(c, "EHLO g\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<real@example.test>\r\nQUIT\r\n")
		io.Copy(io.Discard, br)
		c.Close()
	}
	w.Clock.Advance(5 * time.Minute)
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
			blast(t, w.Addr, client, payload, false)
		}()
	}
	wg.Wait()

	conns, msgs := len(w.Backend.Conns()), len(w.Backend.Messages())
	if conns != 0 || msgs != 0 {
		t.Fatalf("the backend received %d connections and %d messages from black hosts; want none", conns, msgs)
	}
	// The property is only meaningful if those hosts did get through to
	// the point of trying: every trap hitter must now be black.
	for i := 0; i < greys; i++ {
		a := fmt.Sprintf("127.2.%d.%d", i/250, 1+i%250)
		v, err := w.Eng.Classify(netip.MustParseAddr(a))
		if err != nil || v.Class.String() != "black" {
			t.Fatalf("%s: class %s (%v), want black after a trap hit", a, v.Class, err)
		}
	}
	// And a grey host that does everything right does reach the backend,
	// so a broken backend path cannot make this test pass.
	c, br := w.Dial("127.3.0.1")
	readBanner(t, c, br)
	io.WriteString(c, "EHLO ok\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<real@example.test>\r\nQUIT\r\n")
	io.Copy(io.Discard, br)
	c.Close()
	w.Clock.Advance(5 * time.Minute)
	c, br = w.Dial("127.3.0.1")
	readBanner(t, c, br)
	io.WriteString(c, "EHLO ok\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<real@example.test>\r\nQUIT\r\n")
	io.Copy(io.Discard, br)
	c.Close()
	if conns := len(w.Backend.Conns()); conns != 1 {
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

// passHost is one host of TestNeverRelaysAfterThePass and what the test
// knows of it.
type passHost struct {
	addr string

	mu       sync.Mutex
	blackAt  time.Time            // when the test knew the host black; zero: never
	sent     map[string]time.Time // a command's unique token → when it was sent
	operator bool                 // the operator blacklisted it
	trapped  bool                 // a trap hit made it black
}

// black notes that the host is black from at on.
func (h *passHost) black(at time.Time, operator bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.blackAt.IsZero() || at.Before(h.blackAt) {
		h.blackAt = at
	}
	if operator {
		h.operator = true
	} else {
		h.trapped = true
	}
}

func (h *passHost) send(c net.Conn, token, line string) error {
	h.mu.Lock()
	if token != "" {
		h.sent[token] = time.Now()
	}
	h.mu.Unlock()
	_, err := io.WriteString(c, line)
	return err
}

// readReply reads one whole reply and returns its code (0 on error).
func readReply(br *bufio.Reader) int {
	for {
		l, err := br.ReadString('\n')
		if err != nil || len(l) < 4 {
			return 0
		}
		if l[3] != '-' {
			code, _ := strconv.Atoi(l[:3])
			return code
		}
	}
}

// passDialog plays host h after its greylist pass: it passes, then goes
// on with random commands, line by line, each recipient and message
// carrying a unique token. It notes when the host turned black by its own
// doing (a trap it named, a smuggled end of data). interject, if not nil,
// runs once between two of its commands, chosen at random: something
// done to the host meanwhile.
func passDialog(t *testing.T, w *servertest.World, h *passHost, r *rand.Rand, id int, interject func()) {
	c, br := w.Dial(h.addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if readReply(br) != 220 {
		t.Errorf("%s: no banner", h.addr)
		return
	}
	seq := 0
	token := func() string { seq++; return fmt.Sprintf("r%dx%d", id, seq) }
	cmd := func(tok, line string) int {
		if h.send(c, tok, line+"\r\n") != nil {
			return 0
		}
		return readReply(br)
	}
	if cmd("", "EHLO b"+strconv.Itoa(id)) != 250 || cmd("", "MAIL FROM:<s@sender.example>") != 250 {
		return
	}
	steps := 1 + r.Intn(25)
	at := r.Intn(steps + 1)
	if at == 0 && interject != nil {
		interject() // between MAIL and the RCPT that passes
	}
	cmd("", "RCPT TO:<real@example.test>") // the triplet that passes
	for step := range steps {
		if step+1 == at && interject != nil {
			interject()
		}
		var code int
		switch r.Intn(16) {
		case 0, 1, 2:
			tok := token()
			params := []string{"", " NOTIFY=SUCCESS,FAILURE", " ORCPT=rfc822;" + tok + "@example.test", " XFOO=1"}[r.Intn(4)]
			code = cmd(tok, "RCPT TO:<"+tok+"@example.test>"+params)
		case 3:
			// A trap: the reply looks like any other recipient's (451
			// before the pass, 250 after), and from then on the host is
			// black; but a limit or an error may come first, and a host
			// with mail accepted is refused (550), not blacklisted.
			if code = cmd("", "RCPT TO:<trap@example.test>"); code == 250 || code == 451 {
				h.black(time.Now(), false)
			}
		case 4, 5:
			tok := token()
			if code = cmd(tok, "DATA"); code == 354 {
				code = cmd("", "Subject: "+tok+"\r\n\r\nhello\r\n.")
			}
		case 6:
			tok := token()
			if code = cmd(tok, "DATA"); code == 354 {
				// A smuggled end of data: black from the 521 on.
				if code = cmd("", "Subject: "+tok+"\r\n\r\nx\r\n\x00.\r\nMAIL FROM:<evil@x.example>\r\n."); code == 521 {
					h.black(time.Now(), false)
				}
			}
		case 7:
			tok := token()
			if code = cmd(tok, "DATA"); code == 354 {
				code = cmd("", "Subject: "+tok+"\r\n\r\nbare\nLF\r\n.")
			}
		case 8:
			cmd("", "RSET")
			tok := token()
			code = cmd(tok, "MAIL FROM:<"+tok+"@sender.example>"+[]string{"", " SIZE=99999999999", " XFOO=1", " BODY=8BITMIME", " RET=HDRS ENVID=e" + strconv.Itoa(id)}[r.Intn(5)])
		case 9:
			code = cmd("", []string{"XCLIENT ADDR=192.0.2.1", "ETRN example.test", "EXPN staff", "BDAT 5 LAST", "AUTH PLAIN AGFkbWluAGFkbWlu", "VRFY postmaster", "HELP", "TURN"}[r.Intn(8)])
		case 10:
			// A burst past max_rcpts, pipelined.
			var b strings.Builder
			var toks []string
			for range 8 {
				tok := token()
				toks = append(toks, tok)
				fmt.Fprintf(&b, "RCPT TO:<%s@example.test>\r\n", tok)
			}
			h.mu.Lock()
			for _, tok := range toks {
				h.sent[tok] = time.Now()
			}
			h.mu.Unlock()
			io.WriteString(c, b.String())
			for range toks {
				code = readReply(br)
			}
		case 11:
			if code = cmd("", "MAIL FROM:<trap@example.test>"); code == 250 {
				h.black(time.Now(), false)
			}
		case 12:
			code = cmd("", "EHLO again"+strconv.Itoa(id))
			tok := token()
			cmd(tok, "MAIL FROM:<"+tok+"@sender.example>")
		default:
			code = cmd("", "NOOP")
		}
		if code == 0 || code == 421 {
			return
		}
	}
	cmd("", "QUIT")
}

func TestNeverRelaysAfterThePass(t *testing.T) {
	hosts := 200
	if v, err := strconv.Atoi(os.Getenv("MOAT_NORELAY_DIALOGS")); err == nil {
		hosts = max(v/10, 1)
	}
	seed := time.Now().UnixNano()
	if v, err := strconv.ParseInt(os.Getenv("MOAT_NORELAY_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (MOAT_NORELAY_SEED), %d hosts", seed, hosts)
	const maxRcpts = 5
	w := servertest.Start(t, servertest.Config{
		MinRetry:  time.Minute,
		Traps:     []string{"trap@example.test"},
		TarpitMax: 2 * hosts,
		MaxRcpts:  maxRcpts,
		MaxErrors: 100,
		Stutter:   100 * time.Microsecond,
	})
	all := make([]*passHost, hosts)
	for i := range all {
		all[i] = &passHost{addr: fmt.Sprintf("127.4.%d.%d", i/250, 1+i%250), sent: map[string]time.Time{}}
		c, br := w.Dial(all[i].addr)
		readBanner(t, c, br)
		io.WriteString(c, "EHLO g\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<real@example.test>\r\nQUIT\r\n")
		io.Copy(io.Discard, br)
		c.Close()
	}
	w.Clock.Advance(5 * time.Minute)

	var wg sync.WaitGroup
	sem := make(chan struct{}, 40)
	for i, h := range all {
		r := rand.New(rand.NewSource(seed + int64(i)))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// The operator blacklists the host, or another connection
			// of the same host names a trap, between two commands of
			// its session or at any moment.
			operator := func() {
				if err := w.Eng.SetClass(store.HostPrefix(netip.MustParseAddr(h.addr)), store.Black, "operator"); err != nil {
					t.Error(err)
					return
				}
				h.black(time.Now(), true)
			}
			trap := func() {
				c, br := w.Dial(h.addr)
				defer c.Close()
				if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "220 mx.test") {
					// The host has had mail accepted: white, and
					// spliced to the backend, which is the
					// backend's business (docs/RELIABILITY.md).
					return
				}
				io.WriteString(c, "EHLO a\r\nMAIL FROM:<x@sender.example>\r\n")
				readReply(br)
				readReply(br)
				io.WriteString(c, "RCPT TO:<trap@example.test>\r\n")
				if code := readReply(br); code == 250 || code == 451 {
					h.black(time.Now(), false)
				}
			}
			var side sync.WaitGroup
			var interject func()
			switch r.Intn(6) {
			case 0:
				interject = operator
			case 1:
				interject = trap
			case 2, 3:
				side.Add(1)
				delay := time.Duration(r.Intn(40)) * time.Millisecond
				act := []func(){operator, trap}[r.Intn(2)]
				go func() {
					defer side.Done()
					time.Sleep(delay)
					act()
				}()
			}
			passDialog(t, w, h, r, i, interject)
			side.Wait()
		}()
	}
	wg.Wait()

	// Nothing the backend received was sent after its host was black.
	byToken := map[string]*passHost{}
	for _, h := range all {
		for tok := range h.sent {
			byToken[tok] = h
		}
	}
	after := func(tok string) (*passHost, bool) {
		h := byToken[tok]
		if h == nil {
			return nil, false
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		return h, !h.blackAt.IsZero() && h.sent[tok].After(h.blackAt)
	}
	tokRE := regexp.MustCompile(`r\d+x\d+`)
	lineRE := regexp.MustCompile(`^(EHLO \S+|MAIL FROM:<[^<>]*>( (SIZE=\d+|BODY=(7BIT|8BITMIME)|SMTPUTF8|RET=(FULL|HDRS)|ENVID=\S+))*|RCPT TO:<[^<>]*>( (NOTIFY=\S+|ORCPT=\S+))*|DATA|RSET|QUIT)$`)
	for ci, conn := range w.Backend.Conns() {
		inTx := 0
		for _, l := range conn.Lines {
			if !lineRE.MatchString(l) {
				t.Errorf("backend connection %d got %q: not a command moat writes", ci, l)
			}
			if strings.Contains(strings.ToLower(l), "trap@") {
				t.Errorf("backend connection %d got %q: a trap", ci, l)
			}
			switch {
			case strings.HasPrefix(l, "MAIL"), l == "RSET", l == "DATA":
				inTx = 0
				if h, bad := after(tokRE.FindString(l)); bad {
					t.Errorf("backend got %q from %s, sent after the host was black", l, h.addr)
				}
			case strings.HasPrefix(l, "RCPT"):
				if inTx++; inTx > maxRcpts {
					t.Errorf("backend connection %d got %d recipients in one transaction, max_rcpts is %d", ci, inTx, maxRcpts)
				}
				if h, bad := after(tokRE.FindString(l)); bad {
					t.Errorf("backend got %q from %s, sent after the host was black", l, h.addr)
				}
			}
		}
	}
	delivered := 0
	for _, m := range w.Backend.Messages() {
		if h, bad := after(tokRE.FindString(m.Data)); bad {
			t.Errorf("backend took message %q from %s, whose DATA came after the host was black", tokRE.FindString(m.Data), h.addr)
		}
		if strings.Contains(m.Data, "evil@") || strings.Contains(m.Data, "\nLF") {
			t.Errorf("backend took a message with a bare line end or a smuggled end: %q", m.Data)
		}
		delivered++
	}

	// The test must have tried: hosts turned black mid-session and kept
	// sending, and hosts that stayed grey delivered.
	lateCommands, blackened := 0, 0
	for _, h := range all {
		h.mu.Lock()
		if !h.blackAt.IsZero() {
			blackened++
			for _, at := range h.sent {
				if at.After(h.blackAt) {
					lateCommands++
				}
			}
		}
		operator, trapped := h.operator, h.trapped
		h.mu.Unlock()
		v, err := w.Eng.Classify(netip.MustParseAddr(h.addr))
		switch {
		case err != nil:
			t.Fatal(err)
		case operator && (v.Class != store.Black || v.Source != store.SourceOperator):
			t.Errorf("%s: %s by %s, want black by the operator: a pass never overrides the operator", h.addr, v.Class, v.Source)
		case trapped && v.Class != store.Black:
			t.Errorf("%s: %s (%s), want black after a trap hit or a smuggled end", h.addr, v.Class, v.Reason)
		}
	}
	t.Logf("%d hosts, %d turned black mid-session, %d commands sent after that, %d messages delivered", hosts, blackened, lateCommands, delivered)
	if blackened == 0 || lateCommands == 0 || delivered == 0 {
		t.Fatalf("the run proved nothing: %d hosts black mid-session, %d commands after, %d delivered", blackened, lateCommands, delivered)
	}
}
