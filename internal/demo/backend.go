package demo

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// Mailbox is a message the demo's backend took.
type Mailbox struct {
	At     time.Time
	Client netip.Addr // the client moat named in the PROXY header
	From   string
	Rcpts  []string
	Size   int
}

// Backend is the demo's mail server: it reads moat's PROXY v2 header,
// speaks enough SMTP to take a message, knows a few users (550 5.1.1 for
// anyone else, as a real server answers) and keeps what it took in memory.
// It stands in for Postfix in the demo only; moat's tests of the real
// thing use Postfix.
type Backend struct {
	ln    net.Listener
	users map[string]bool
	wg    sync.WaitGroup

	mu   sync.Mutex
	mail []Mailbox
	open map[net.Conn]bool
}

// startBackend listens on a free loopback port.
func startBackend(users []string) (*Backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: backend: %w", err)
	}
	b := &Backend{ln: &proxyproto.Listener{Listener: ln}, users: map[string]bool{}, open: map[net.Conn]bool{}}
	for _, u := range users {
		b.users[strings.ToLower(u)] = true
	}
	b.wg.Add(1)
	go b.accept()
	return b, nil
}

// Addr is where the backend listens.
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// Messages returns what the backend took so far.
func (b *Backend) Messages() []Mailbox {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Mailbox(nil), b.mail...)
}

// Close stops the backend and ends its connections.
func (b *Backend) Close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.open {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Backend) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.open[c] = true
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.serve(c)
			b.mu.Lock()
			delete(b.open, c)
			b.mu.Unlock()
			c.Close()
		}()
	}
}

// serve speaks SMTP on one connection.
func (b *Backend) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	var client netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		client = ta.AddrPort().Addr().Unmap()
	}
	tp := textproto.NewConn(struct {
		io.Reader
		io.WriteCloser
	}{bufio.NewReader(c), c})
	say := func(code int, text string) bool { return tp.PrintfLine("%d %s", code, text) == nil }
	if !say(220, "backend.demo.moat.test ESMTP demo backend") {
		return
	}
	var msg *Mailbox
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			tp.PrintfLine("250-backend.demo.moat.test")
			tp.PrintfLine("250-PIPELINING")
			tp.PrintfLine("250-SIZE 10240000")
			tp.PrintfLine("250 8BITMIME")
		case "HELO":
			say(250, "backend.demo.moat.test")
		case "MAIL":
			msg = &Mailbox{Client: client, From: addrOf(arg)}
			say(250, "2.1.0 Ok")
		case "RCPT":
			rcpt := addrOf(arg)
			switch {
			case msg == nil:
				say(503, "5.5.1 Error: need MAIL command")
			case !b.users[strings.ToLower(rcpt)]:
				say(550, "5.1.1 <"+rcpt+">: Recipient address rejected: User unknown")
			default:
				msg.Rcpts = append(msg.Rcpts, rcpt)
				say(250, "2.1.5 Ok")
			}
		case "DATA":
			if msg == nil || len(msg.Rcpts) == 0 {
				say(554, "5.5.1 Error: no valid recipients")
				continue
			}
			say(354, "End data with <CR><LF>.<CR><LF>")
			n, err := io.Copy(io.Discard, tp.DotReader())
			if err != nil {
				return
			}
			msg.Size, msg.At = int(n), time.Now()
			b.mu.Lock()
			b.mail = append(b.mail, *msg)
			b.mu.Unlock()
			msg = nil
			say(250, "2.0.0 Ok: queued")
		case "RSET":
			msg = nil
			say(250, "2.0.0 Ok")
		case "NOOP":
			say(250, "2.0.0 Ok")
		case "QUIT":
			say(221, "2.0.0 Bye")
			return
		default:
			say(502, "5.5.2 Error: command not recognized")
		}
	}
}

// addrOf takes the address out of "FROM:<a@b> PARAMS" or "TO:<a@b>".
func addrOf(arg string) string {
	_, rest, ok := strings.Cut(arg, "<")
	if !ok {
		return ""
	}
	a, _, _ := strings.Cut(rest, ">")
	return a
}
