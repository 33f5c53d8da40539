package dialog_test

// Dialog scripts: each file in testdata/dialogs is a conversation with a
// running server, in the chasquid habit: a client line, the reply it
// expects, nothing else. Directives set up the world around it and look
// at what reached the backend.
//
//	# comment
//	@greet_delay 200ms      greylist.greet_delay    (before the first @connect)
//	@min_retry 1m           greylist.min_retry      (before the first @connect)
//	@max_rcpts 5            limits.max_rcpts        (before the first @connect)
//	@max_size 10000         limits.max_message_size (before the first @connect)
//	@trusted 127.0.0.50/32  a trusted load balancer (before the first @connect)
//	@listen [::1]:0         where the server listens (before the first @connect)
//	@trap trap@example.test a trap address          (before the first @connect)
//	@blacklist 127.0.0.66/32                        (before the first @connect)
//	@domain example.test    one of our domains      (before the first @connect)
//	@observe                mode = "observe"        (before the first @connect)
//	@client 127.0.0.10      source address of the next @connect
//	@advance 2m             move the fake clock
//	@operator 127.0.0.10 black   the operator sets a class ("moat hosts black")
//	@connect                open a connection
//	C: EHLO x               send a line (CRLF added)
//	R: "EHLO x\r\nMAIL…"    send raw bytes (a Go string literal)
//	S: 250-                 read one reply line; it must start with this
//	S= 250 mx.test          read one reply line; it must be exactly this
//	@eof                    the server must close the connection
//	@close                  close our side
//	@class 127.0.0.10 white the store's class for that address now ("none": nothing stored)
//	@source 127.0.0.10 trap the kind of evidence behind the stored class
//	@backend-messages 1     messages the backend received so far
//	@backend-conns 0        connections the backend received so far
//	@backend-banner 554 5.7.1 No   the backend greets with this and hangs up ("-": greets again)
//	@backend-banner-once 421 4.7.0 Busy   the same, for its next connection only
//	@backend-rcpt a@b 421 4.7.0 Busy      the backend's reply to RCPT TO:<a@b> ("-": 250 again)
//	@backend-ehlo PIPELINING | SIZE 5000  the keywords of the backend's EHLO
//	@backend-hangup         the backend ends its open connections with a 421 (its idle timeout)
//	@backend-eod a@b 554 5.7.1 No         the backend's reply to the end of data of a message from a@b
//	@backend-from 127.0.0.10  the PROXY header of the last backend connection named this client
//	@backend-last EHLO c | MAIL FROM:<a@b> | QUIT   the last backend connection's lines, exactly
//	@backend-never trap@    no line the backend received contains this
//	@backend-rcpts 1 TO:<a@b>,TO:<c@d>    the recipients of the backend's message 1, exactly
//	@told 127.0.0.66 deferred 1   the ledger counts this many of the host's messages told so
//	@log 127.0.0.10 would greylisted   a session log line of that client has this value

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/prefix"
	"moat/internal/server/servertest"
	"moat/internal/store"
)

func TestDialogScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/dialogs/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dialog scripts found: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScript(t, f)
		})
	}
}

func runScript(t *testing.T, path string) {
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wc     servertest.Config
		w      *servertest.World
		client = "127.0.0.10"
		conn   net.Conn
		br     *bufio.Reader
	)
	for n, raw := range strings.Split(string(text), "\n") {
		line := strings.TrimRight(raw, "\r")
		where := fmt.Sprintf("%s:%d", path, n+1)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		verb, arg, _ := strings.Cut(line, " ")
		needWorld := func() {
			if w == nil {
				w = servertest.Start(t, wc)
			}
		}
		duration := func() time.Duration {
			d, err := time.ParseDuration(arg)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			return d
		}
		number := func(s string) int {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			return n
		}
		switch verb {
		case "@greet_delay":
			wc.GreetDelay = duration()
		case "@min_retry":
			wc.MinRetry = duration()
		case "@max_rcpts":
			wc.MaxRcpts = number(arg)
		case "@max_size":
			wc.MaxSize = int64(number(arg))
		case "@trusted":
			p, err := prefix.Parse(arg)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			wc.Trusted = append(wc.Trusted, p)
		case "@listen":
			wc.Listen = arg
		case "@trap":
			wc.Traps = append(wc.Traps, arg)
		case "@blacklist":
			wc.Blacklist = append(wc.Blacklist, arg)
		case "@domain":
			wc.Domains = append(wc.Domains, arg)
		case "@observe":
			wc.Observe = true
		case "@client":
			client = arg
		case "@advance":
			needWorld()
			w.Clock.Advance(duration())
		case "@operator":
			needWorld()
			ip, class, _ := strings.Cut(arg, " ")
			p, err := prefix.Parse(ip)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			c, err := store.ParseClass(class)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if err := w.Eng.SetClass(p, c, "operator in "+filepath.Base(path)); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		case "@connect":
			needWorld()
			conn, br = w.Dial(client)
		case "@close":
			conn.Close()
		case "C:":
			if _, err := io.WriteString(conn, arg+"\r\n"); err != nil {
				t.Fatalf("%s: send: %v", where, err)
			}
		case "R:":
			s, err := strconv.Unquote(arg)
			if err != nil {
				t.Fatalf("%s: bad raw string: %v", where, err)
			}
			if _, err := io.WriteString(conn, s); err != nil {
				t.Fatalf("%s: send: %v", where, err)
			}
		case "S:", "S=":
			got, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: want a line %q, got %q and %v", where, arg, got, err)
			}
			if verb == "S=" && got != arg+"\r\n" || verb == "S:" && !strings.HasPrefix(got, arg) {
				t.Fatalf("%s: want a line %s %q, got %q", where, map[string]string{"S:": "starting", "S=": "exactly"}[verb], arg, got)
			}
		case "@eof":
			got, err := br.ReadString('\n')
			if err != io.EOF || got != "" {
				t.Fatalf("%s: want the server to close, got %q, %v", where, got, err)
			}
		case "@class", "@source":
			ip, want, _ := strings.Cut(arg, " ")
			p, err := prefix.Parse(ip)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if verb == "@class" {
				if got := w.Class(p.Addr(), want); got != want {
					t.Fatalf("%s: class of %s: got %s, want %s", where, ip, got, want)
				}
				continue
			}
			h, ok, err := w.Store.Lookup(p.Addr())
			if got := classify.SourceOf(h).String(); err != nil || !ok || got != want {
				t.Fatalf("%s: source of %s: got %s (%v, %v), want %s", where, ip, got, ok, err, want)
			}
		case "@backend-messages", "@backend-conns":
			got := len(w.Backend.Messages())
			if verb == "@backend-conns" {
				got = len(w.Backend.Conns())
			}
			if want := number(arg); got != want {
				t.Fatalf("%s: %s: got %d, want %d", where, verb, got, want)
			}
		case "@backend-banner", "@backend-banner-once":
			needWorld()
			if arg == "-" {
				arg = ""
			}
			if verb == "@backend-banner" {
				w.Backend.SetBanner(arg)
			} else {
				w.Backend.BannerOnce(arg)
			}
		case "@backend-rcpt":
			needWorld()
			addr, reply, _ := strings.Cut(arg, " ")
			if reply == "-" {
				reply = ""
			}
			w.Backend.RcptReply(addr, reply)
		case "@backend-eod":
			needWorld()
			sender, reply, _ := strings.Cut(arg, " ")
			w.Backend.EndOfDataReply(sender, reply)
		case "@backend-hangup":
			w.Backend.Hangup()
		case "@backend-ehlo":
			needWorld()
			w.Backend.SetEHLO(strings.Split(arg, " | ")...)
		case "@backend-from":
			conns := w.Backend.Conns()
			if len(conns) == 0 {
				t.Fatalf("%s: the backend saw no connection", where)
			}
			if host, _, _ := net.SplitHostPort(conns[len(conns)-1].Client); host != arg {
				t.Fatalf("%s: backend saw client %q, want %s", where, conns[len(conns)-1].Client, arg)
			}
		case "@backend-last":
			conns := w.Backend.Conns()
			if len(conns) == 0 {
				t.Fatalf("%s: the backend saw no connection", where)
			}
			want := strings.Split(arg, " | ")
			// The last QUIT may still be on its way.
			for i := 0; i < 100 && len(conns[len(conns)-1].Lines) < len(want); i++ {
				time.Sleep(20 * time.Millisecond)
				conns = w.Backend.Conns()
			}
			if got := conns[len(conns)-1].Lines; strings.Join(got, " | ") != arg {
				t.Fatalf("%s: the last backend connection got\n\t%q\nwant\n\t%q", where, got, want)
			}
		case "@backend-never":
			for _, l := range w.Backend.Lines() {
				if strings.Contains(strings.ToLower(l), strings.ToLower(arg)) {
					t.Fatalf("%s: the backend received %q", where, l)
				}
			}
		case "@backend-rcpts":
			i, want, _ := strings.Cut(arg, " ")
			msgs := w.Backend.Messages()
			k := number(i)
			if k > len(msgs) {
				t.Fatalf("%s: the backend has %d messages, not %d", where, len(msgs), k)
			}
			if got := strings.Join(msgs[k-1].Rcpts, ","); got != want {
				t.Fatalf("%s: message %d went to %q, want %q", where, k, got, want)
			}
		case "@told":
			f := strings.Fields(arg)
			if len(f) != 3 {
				t.Fatalf("%s: want @told IP KIND N", where)
			}
			want, got := number(f[2]), int64(-1)
			for i := 0; i < 100 && got != int64(want); i++ {
				if i > 0 {
					time.Sleep(20 * time.Millisecond) // the record is written as the session ends
				}
				r, _, err := w.Ledger.Of(netip.MustParseAddr(f[0]))
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				got = map[string]int64{"dropped": r.Dropped, "deferred": r.Deferred, "refused": r.Refused}[f[1]]
			}
			if got != int64(want) {
				t.Fatalf("%s: the ledger counts %d messages of %s %s, want %d", where, got, f[0], f[1], want)
			}
		case "@log":
			f := strings.SplitN(arg, " ", 3)
			if len(f) != 3 {
				t.Fatalf("%s: want @log IP KEY VALUE", where)
			}
			var seen []string
			for i := 0; i < 100; i++ {
				if i > 0 {
					time.Sleep(20 * time.Millisecond) // logged as the session ends
				}
				seen = seen[:0]
				for _, rec := range w.Log.Records() {
					if rec["msg"] == "session" && rec["client"] == f[0] {
						seen = append(seen, fmt.Sprint(rec[f[1]]))
					}
				}
				if slices.Contains(seen, f[2]) {
					break
				}
			}
			if !slices.Contains(seen, f[2]) {
				t.Fatalf("%s: sessions of %s logged %s %q, want %q among them", where, f[0], f[1], seen, f[2])
			}
		default:
			t.Fatalf("%s: unknown script line %q", where, line)
		}
	}
}
