package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one thing the traffic generator saw happen, for the story the
// demo tells.
type Event struct {
	At     time.Time
	Role   string // "legit", "bot", "hasty bot", "early talker", "trap hitter", "harvester"
	Client netip.Addr
	Text   string
}

func (e Event) String() string {
	return fmt.Sprintf("%s  %-12s %-11s %s", e.At.Format("15:04:05"), e.Role, e.Client, e.Text)
}

// Traffic plays the senders of the demo on loopback, each kind from its
// own 127.x network so that the store's lists read like a story:
//
//   - 127.1.0.0/24: legitimate mail servers that wait for the banner and
//     retry a deferred message after more than min_retry, as real MTAs
//     do; their messages reach the backend and they become white;
//   - 127.2.0.0/24: bots that send once and never come back (grey);
//   - 127.3.0.0/24: bots that retry, but too soon (grey);
//   - 127.4.0.0/24: early talkers, who speak before the banner (black,
//     tarpitted);
//   - 127.5.0.0/24: bots that write to a spamtrap (black, tarpitted);
//   - 127.6.0.1 fetches the bait page, 127.6.0.2 mails the addresses it
//     found (both black).
//
// Every session has a deadline and every loop ends with its context, so
// the generator stops by itself.
type Traffic struct {
	smtp, bait string // where moat and its bait page listen
	domain     string // the backend's domain
	retry      time.Duration
	trap       string
	report     func(Event)

	delivered atomic.Int64 // legitimate messages the backend accepted (moat said 250 at the end of DATA)
	wg        sync.WaitGroup
}

// Delivered is how many legitimate messages moat accepted for the backend.
func (t *Traffic) Delivered() int64 { return t.delivered.Load() }

// run starts every kind of sender; they stop when ctx is done.
func (t *Traffic) run(ctx context.Context) {
	for i := range 3 {
		t.loop(ctx, func() { t.legit(ctx, i) })
	}
	t.loop(ctx, func() { t.bots(ctx) })
	t.loop(ctx, func() { t.hastyBots(ctx) })
	t.loop(ctx, func() { t.earlyTalkers(ctx) })
	t.loop(ctx, func() { t.trapHitters(ctx) })
	t.loop(ctx, func() { t.harvester(ctx) })
}

func (t *Traffic) loop(ctx context.Context, fn func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		fn()
	}()
}

// wait returns after t or when ctx is done, false then.
func wait(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// jitter is d plus up to half of it, so the senders do not march in step.
func jitter(d time.Duration) time.Duration { return d + rand.N(d/2+1) }

func (t *Traffic) say(role string, client netip.Addr, format string, args ...any) {
	if t.report != nil {
		t.report(Event{At: time.Now(), Role: role, Client: client, Text: fmt.Sprintf(format, args...)})
	}
}

// legit is a legitimate mail server: it sends a message every few
// seconds and retries a deferred one after the greylist's min_retry, as
// an MTA's queue does.
func (t *Traffic) legit(ctx context.Context, i int) {
	src := netip.AddrFrom4([4]byte{127, 1, 0, byte(i + 1)})
	helo := fmt.Sprintf("mail%d.example.com", i+1)
	users := []string{"alice", "bob", "carol"}
	wait(ctx, time.Duration(i)*700*time.Millisecond)
	for n := 1; ctx.Err() == nil; n++ {
		from := fmt.Sprintf("news%d@example.com", i+1)
		to := users[(i+n)%len(users)] + "@" + t.domain
		for try := 1; ; try++ {
			code, err := t.send(ctx, src, helo, from, []string{to}, "legitimate message", time.Minute)
			switch {
			case ctx.Err() != nil:
				return
			case err == nil && code == 250:
				t.delivered.Add(1)
				t.say("legit", src, "message %d to %s delivered (attempt %d)", n, to, try)
			case code/100 == 4 || err != nil:
				t.say("legit", src, "message %d to %s deferred (%s): queued, retrying in %s", n, to, what(code, err), t.retry)
				if !wait(ctx, t.retry) {
					return
				}
				continue
			default:
				t.say("legit", src, "message %d to %s refused (%d): bounced", n, to, code)
			}
			break
		}
		if !wait(ctx, jitter(8*time.Second)) {
			return
		}
	}
}

// what says how a session ended: its reply code, or why there was none.
func what(code int, err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "no answer in time: held by the tarpit, gave up"
	case err != nil && code == 0:
		return err.Error()
	}
	return fmt.Sprint(code)
}

// bots send once from ever new addresses and never retry. Each message
// is a new triplet (greylisting folds the address to its /24): a bot
// that sent the same again later would be retrying.
func (t *Traffic) bots(ctx context.Context) {
	for n := 0; wait(ctx, jitter(1500*time.Millisecond)); n++ {
		src := netip.AddrFrom4([4]byte{127, 2, 0, byte(n%200 + 1)})
		rcpt := fmt.Sprintf("user%d@%s", n, t.domain)
		code, err := t.send(ctx, src, "localhost", "offer@cheap-pills.example", []string{rcpt}, "buy now", 15*time.Second)
		if ctx.Err() != nil {
			return
		}
		t.say("bot", src, "spam to %s: %s, never comes back", rcpt, what(code, err))
	}
}

// hastyBots retry, but every second: never min_retry after the first
// try. Each bot sends from a sender of its own, a triplet no other bot
// of its /24 started.
func (t *Traffic) hastyBots(ctx context.Context) {
	for n := 0; wait(ctx, jitter(5*time.Second)); n++ {
		src := netip.AddrFrom4([4]byte{127, 3, 0, byte(n%200 + 1)})
		rcpt := "bob@" + t.domain
		from := fmt.Sprintf("winner%d@lottery.example", n)
		var code int
		for range 3 {
			code, _ = t.send(ctx, src, "pc.example", from, []string{rcpt}, "you won", 15*time.Second)
			if ctx.Err() != nil || !wait(ctx, time.Second) {
				return
			}
		}
		t.say("hasty bot", src, "3 tries a second apart to %s, last %d: gives up", rcpt, code)
	}
}

// earlyTalkers speak before the banner is complete.
func (t *Traffic) earlyTalkers(ctx context.Context) {
	for n := 0; wait(ctx, jitter(4*time.Second)); n++ {
		src := netip.AddrFrom4([4]byte{127, 4, 0, byte(n%8 + 1)})
		c, err := t.dial(ctx, src, t.smtp)
		if err != nil {
			continue
		}
		c.SetDeadline(time.Now().Add(12 * time.Second))
		io.WriteString(c, "EHLO bot\r\nMAIL FROM:<x@spam.example>\r\nRCPT TO:<alice@"+t.domain+">\r\nDATA\r\n")
		got, _ := io.Copy(io.Discard, c)
		c.Close()
		t.say("early talker", src, "talked before the banner; %d bytes back in 12 s", got)
	}
}

// trapHitters write to a spamtrap.
func (t *Traffic) trapHitters(ctx context.Context) {
	for n := 0; wait(ctx, jitter(6*time.Second)); n++ {
		src := netip.AddrFrom4([4]byte{127, 5, 0, byte(n%5 + 1)})
		code, err := t.send(ctx, src, "bulk.example", "promo@bulk.example", []string{t.trap, "carol@" + t.domain}, "promo", 12*time.Second)
		if ctx.Err() != nil {
			return
		}
		t.say("trap hitter", src, "spam to the trap %s: %s", t.trap, what(code, err))
	}
}

var mailto = regexp.MustCompile(`mailto:([^"<>\s]+)`)

// harvester fetches the bait page from one address and mails what it
// found from another: both are black once a bait address is used.
func (t *Traffic) harvester(ctx context.Context) {
	crawler := netip.AddrFrom4([4]byte{127, 6, 0, 1})
	spammer := netip.AddrFrom4([4]byte{127, 6, 0, 2})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return t.dial(ctx, crawler, addr)
	}}}
	defer client.CloseIdleConnections()
	for wait(ctx, jitter(10*time.Second)) {
		resp, err := client.Get("http://" + t.bait + "/contact")
		if err != nil {
			continue
		}
		page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		var found []string
		for _, m := range mailto.FindAllSubmatch(page, -1) {
			found = append(found, string(m[1]))
		}
		t.say("harvester", crawler, "fetched the bait page: %d addresses", len(found))
		if len(found) == 0 || !wait(ctx, 2*time.Second) {
			continue
		}
		code, err := t.send(ctx, spammer, "mailer.example", "deals@harvest.example", found[:1], "deals", 12*time.Second)
		if ctx.Err() != nil {
			return
		}
		t.say("harvester", spammer, "mailed harvested %s: %s", found[0], what(code, err))
	}
}

// dial connects from src.
func (t *Traffic) dial(ctx context.Context, src netip.Addr, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 5 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}

// send runs one SMTP session from src: it waits for the whole banner,
// greets, and offers one message to rcpts. It returns the first reply
// that was not a success (a refused recipient's, the end of data's), or
// 250 when the message was taken. A session that is still going at the
// deadline is cut.
func (t *Traffic) send(ctx context.Context, src netip.Addr, helo, from string, rcpts []string, subject string, deadline time.Duration) (int, error) {
	conn, err := t.dial(ctx, src, t.smtp)
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(deadline))
	c, err := smtp.NewClient(conn, "moat")
	if err != nil {
		return code(err), err
	}
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return code(err), err
	}
	if err := c.Mail(from); err != nil {
		return code(err), err
	}
	first, accepted := 0, 0
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			if first == 0 {
				first = code(err)
			}
			continue
		}
		accepted++
	}
	if accepted == 0 {
		c.Quit()
		return first, nil
	}
	w, err := c.Data()
	if err != nil {
		return code(err), err
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n%s\r\n", from, strings.Join(rcpts, ">, <"), subject, subject)
	if err := w.Close(); err != nil {
		return code(err), err
	}
	c.Quit()
	return 250, nil
}

// code is the SMTP reply code in err, 0 when it is no SMTP reply.
func code(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// Send runs one SMTP session from src to moat, as the generator's senders
// do, for tests that make their own traffic: the first reply that was not
// a success, or 250 when the message was taken.
func (t *Traffic) Send(ctx context.Context, src netip.Addr, helo, from string, rcpts []string) (int, error) {
	return t.send(ctx, src, helo, from, rcpts, "hello", 15*time.Second)
}
