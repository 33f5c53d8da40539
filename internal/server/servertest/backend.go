// Package servertest runs a moat server on loopback for the tests of the
// server and of the dialog: a real store, engine and tarpit on a fake
// clock, and a Backend that records what reaches it. The Backend is a
// stand-in for the real mail server in unit tests only; the end-to-end
// tests under test/ use a real Postfix.
package servertest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// Backend is a minimal SMTP server behind a PROXY v2 header that records
// every command line and message it receives, and can be told to refuse.
type Backend struct {
	ln net.Listener

	mu       sync.Mutex
	conns    []*Conn
	messages []Message
	banners  []string          // banners for the next connections, in order; then banner
	banner   string            // "" for the usual 220
	rcpt     map[string]string // a recipient's reply instead of 250; a 421 also closes
	ehlo     []string          // EHLO keywords
	tls      *tls.Config       // STARTTLS, when set
	open     map[net.Conn]bool // connections being served
	slow     time.Duration     // wait this long before the reply to the end of data
	eod      map[string]string // a sender's reply to the end of data instead of 250
}

// Conn is what the backend saw of one connection.
type Conn struct {
	Client string   // the client address from the PROXY header
	TLS    string   // the client's TLS version from the PROXY header's PP2_TYPE_SSL, "" for none
	Lines  []string // command lines, in order (DATA content excluded)
	InTLS  bool     // moat started TLS with the backend
}

// Message is a message the backend took.
type Message struct {
	Client string   // the client address from the PROXY header
	From   string   // the MAIL command's argument
	Rcpts  []string // the RCPT commands' arguments
	Data   string   // the content, as received, without the final dot line
}

// StartBackend starts a backend on loopback; it stops with the test.
func StartBackend(t testing.TB) *Backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{ln: &proxyproto.Listener{Listener: ln}, rcpt: map[string]string{}, open: map[net.Conn]bool{}, eod: map[string]string{},
		ehlo: []string{"PIPELINING", "SIZE 10240000", "CHUNKING", "8BITMIME", "DSN", "SMTPUTF8"}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := b.ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

// Addr is where the backend listens.
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// SetBanner makes every later connection get banner (a whole reply line
// without CRLF) and be closed; "" restores the usual greeting.
func (b *Backend) SetBanner(banner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.banner = banner
}

// BannerOnce makes the next connection alone get banner and be closed.
func (b *Backend) BannerOnce(banner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.banners = append(b.banners, banner)
}

// RcptReply makes RCPT TO:<addr> get reply (a whole line without CRLF); a
// 421 closes the connection after it, as Postfix does. "" restores 250.
func (b *Backend) RcptReply(addr, reply string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if reply == "" {
		delete(b.rcpt, strings.ToLower(addr))
		return
	}
	b.rcpt[strings.ToLower(addr)] = reply
}

// SetEHLO sets the keywords of the EHLO reply.
func (b *Backend) SetEHLO(keywords ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ehlo = keywords
}

// EndOfDataReply makes the end of data of a message from sender get
// reply (a whole line without CRLF) instead of 250; as Postfix does after
// such a refusal, the transaction stays open until RSET.
func (b *Backend) EndOfDataReply(sender, reply string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.eod[strings.ToLower(sender)] = reply
}

// SlowEndOfData makes the backend wait d before it replies to the end of
// data (as content filters on a large message do).
func (b *Backend) SlowEndOfData(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.slow = d
}

// OfferTLS makes the backend offer STARTTLS with cfg.
func (b *Backend) OfferTLS(cfg *tls.Config) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tls = cfg
}

// Hangup ends every open connection with a 421, as a backend does to a
// connection idle past its timeout.
func (b *Backend) Hangup() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.open {
		fmt.Fprintf(c, "421 4.4.2 backend.test Error: timeout exceeded\r\n")
		c.Close()
	}
}

// Conns returns what the backend saw of each connection so far.
func (b *Backend) Conns() []Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Conn, len(b.conns))
	for i, c := range b.conns {
		out[i] = *c
		out[i].Lines = append([]string(nil), c.Lines...)
	}
	return out
}

// Messages returns the messages the backend took so far.
func (b *Backend) Messages() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.messages...)
}

// Lines returns every command line the backend received, in all
// connections.
func (b *Backend) Lines() []string {
	var all []string
	for _, c := range b.Conns() {
		all = append(all, c.Lines...)
	}
	return all
}

func (b *Backend) serve(raw net.Conn) {
	defer raw.Close()
	b.mu.Lock()
	b.open[raw] = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.open, raw)
		b.mu.Unlock()
	}()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	var c net.Conn = raw
	br := bufio.NewReader(c)
	// RemoteAddr makes the proxyproto layer read the header.
	rec := &Conn{Client: raw.RemoteAddr().String()}
	if pc, ok := raw.(*proxyproto.Conn); ok && pc.ProxyHeader() != nil {
		if tlvs, err := pc.ProxyHeader().TLVs(); err == nil {
			if ssl, ok := tlvparse.FindSSL(tlvs); ok && ssl.ClientSSL() {
				rec.TLS, _ = ssl.SSLVersion()
			}
		}
	}
	b.mu.Lock()
	b.conns = append(b.conns, rec)
	banner := b.banner
	if len(b.banners) > 0 {
		banner, b.banners = b.banners[0], b.banners[1:]
	}
	b.mu.Unlock()
	if banner != "" {
		fmt.Fprintf(c, "%s\r\n", banner)
		return
	}
	fmt.Fprintf(c, "220 backend.test ESMTP\r\n")
	var msg *Message
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		b.mu.Lock()
		rec.Lines = append(rec.Lines, line)
		ehlo, tlsCfg := b.ehlo, b.tls
		b.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			keywords := append([]string{"backend.test"}, ehlo...)
			if tlsCfg != nil && !rec.InTLS {
				keywords = append(keywords, "STARTTLS")
			}
			for i, k := range keywords {
				sep := "-"
				if i == len(keywords)-1 {
					sep = " "
				}
				fmt.Fprintf(c, "250%s%s\r\n", sep, k)
			}
		case "STARTTLS":
			if tlsCfg == nil || rec.InTLS {
				fmt.Fprintf(c, "502 5.5.2 Error: command not recognized\r\n")
				continue
			}
			fmt.Fprintf(c, "220 2.0.0 Ready to start TLS\r\n")
			tc := tls.Server(c, tlsCfg)
			if tc.Handshake() != nil {
				return
			}
			c, br = tc, bufio.NewReader(tc)
			b.mu.Lock()
			rec.InTLS = true
			b.mu.Unlock()
		case "HELO", "NOOP":
			fmt.Fprintf(c, "250 2.0.0 Ok\r\n")
		case "RSET":
			msg = nil
			fmt.Fprintf(c, "250 2.0.0 Ok\r\n")
		case "MAIL":
			if msg != nil {
				fmt.Fprintf(c, "503 5.5.1 Error: nested MAIL command\r\n")
				continue
			}
			msg = &Message{Client: rec.Client, From: arg}
			fmt.Fprintf(c, "250 2.1.0 Ok\r\n")
		case "RCPT":
			if msg == nil {
				fmt.Fprintf(c, "503 5.5.1 Error: need MAIL command\r\n")
				continue
			}
			if r := b.rcptReply(arg); r != "" {
				fmt.Fprintf(c, "%s\r\n", r)
				if strings.HasPrefix(r, "421") {
					return
				}
				continue
			}
			msg.Rcpts = append(msg.Rcpts, arg)
			fmt.Fprintf(c, "250 2.1.5 Ok\r\n")
		case "DATA":
			if msg == nil || len(msg.Rcpts) == 0 {
				fmt.Fprintf(c, "503 5.5.1 Error: need RCPT command\r\n")
				continue
			}
			fmt.Fprintf(c, "354 End data with <CR><LF>.<CR><LF>\r\n")
			var data strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return // no end: nothing delivered
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
			}
			msg.Data = data.String()
			b.mu.Lock()
			slow := b.slow
			refuse := ""
			for sender, r := range b.eod {
				if strings.Contains(strings.ToLower(msg.From), sender) {
					refuse = r
				}
			}
			b.mu.Unlock()
			if refuse != "" {
				fmt.Fprintf(c, "%s\r\n", refuse)
				continue
			}
			time.Sleep(slow)
			if _, err := fmt.Fprintf(c, "250 2.0.0 Ok: queued as TEST\r\n"); err != nil {
				return // the client did not wait: it keeps the message
			}
			b.mu.Lock()
			b.messages = append(b.messages, *msg)
			b.mu.Unlock()
			msg = nil
		case "QUIT":
			fmt.Fprintf(c, "221 2.0.0 Bye\r\n")
			return
		default:
			fmt.Fprintf(c, "502 5.5.2 Error: command not recognized\r\n")
		}
	}
}

// rcptReply is the reply set for the recipient in arg ("TO:<a@b> ..."), if any.
func (b *Backend) rcptReply(arg string) string {
	addr := strings.ToLower(arg)
	if i := strings.IndexByte(addr, '<'); i >= 0 {
		addr = addr[i+1:]
		if j := strings.IndexByte(addr, '>'); j >= 0 {
			addr = addr[:j]
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r, ok := b.rcpt[addr]; ok {
		return r
	}
	// The usual test for an unknown mailbox.
	if strings.HasPrefix(addr, "unknown") {
		return "550 5.1.1 <" + addr + ">: Recipient address rejected: User unknown"
	}
	return ""
}
