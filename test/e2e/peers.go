package e2e

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Backend is a Postfix that plays the real mail server behind moat.
type Backend struct {
	*Postfix
	Addr      string   // host:port its smtpd listens on
	Proxy     bool     // whether smtpd expects a PROXY header first
	Bypass    string   // host:port of its bypass listener (StartBackendWithBypass); "" if none
	Mailboxes []string // the addresses it accepts
}

// StartBackend starts a Postfix that accepts mail for example.test into a
// Maildir per mailbox (each an address like "alice@example.test") and
// rejects every other recipient in example.test with 550 5.1.1 at RCPT.
// With proxy, its smtpd expects a PROXY header (v1 or v2) before SMTP, as
// behind moat's default backend_proxy_protocol. It listens on 127.0.0.1 at
// a free port. Mail for other domains is accepted from 127.0.0.0/8 (so
// relay rules never interfere) but never leaves: the transports are error.
func StartBackend(t testing.TB, proxy bool, mailboxes ...string) *Backend {
	t.Helper()
	return startBackend(t, FreeAddr(t, "127.0.0.1"), proxy, "", mailboxes...)
}

// StartBackendWithBypass starts a backend as StartBackend(t, true, …)
// does, plus the listener moat's kernel bypass sends white hosts to: a
// second smtpd on a free port of 127.0.0.1 that takes clients without a
// PROXY header and logs as postfix/bypass/smtpd.
func StartBackendWithBypass(t testing.TB, mailboxes ...string) *Backend {
	t.Helper()
	return startBackend(t, FreeAddr(t, "127.0.0.1"), true, FreeAddr(t, "127.0.0.1"), mailboxes...)
}

func startBackend(t testing.TB, addr string, proxy bool, bypass string, mailboxes ...string) *Backend {
	t.Helper()
	requirePostfix(t)
	dir := instanceDir(t, "backend")
	var vmailbox strings.Builder
	for _, mb := range mailboxes {
		local, domain := splitMailbox(t, mb)
		fmt.Fprintf(&vmailbox, "%s %s/%s/\n", mb, domain, local)
	}
	mailDir := filepath.Join(dir, "mail")
	if err := os.Mkdir(mailDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The virtual delivery agent runs as nobody and creates the
	// Maildirs below mailDir itself.
	uid, gid := lookupIDs(t, "nobody", "nogroup")
	if err := os.Chown(mailDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	proxyProto := ""
	if proxy {
		proxyProto = "haproxy"
	}
	mainCF := commonMainCF(dir, "backend.example.test", "127.0.0.1") + fmt.Sprintf(`mynetworks = 127.0.0.0/8
virtual_mailbox_domains = %[2]s
virtual_mailbox_maps = texthash:%[1]s/etc/vmailbox
virtual_mailbox_base = %[1]s/mail
virtual_uid_maps = static:%[3]d
virtual_gid_maps = static:%[4]d
virtual_minimum_uid = 1
default_transport = error:test backend delivers nowhere
relay_transport = error:test backend delivers nowhere
smtpd_upstream_proxy_protocol = %[5]s
`, dir, Domain, uid, gid, proxyProto)
	master := addr + " inet n - n - - smtpd\n" + masterCF
	if bypass != "" {
		master += bypass + " inet n - n - - smtpd\n  -o smtpd_upstream_proxy_protocol=\n  -o syslog_name=postfix/bypass\n"
	}
	b := &Backend{Addr: addr, Proxy: proxy, Bypass: bypass, Mailboxes: mailboxes}
	b.Postfix = startPostfix(t, "backend", dir, mainCF, master, map[string]string{"vmailbox": vmailbox.String()})
	for _, a := range []string{addr, bypass} {
		if a != "" && !waitListening(a, 10*time.Second, b.done) {
			t.Fatalf("backend: smtpd is not listening on %s\nmaillog:\n%s", a, b.Log())
		}
	}
	return b
}

func splitMailbox(t testing.TB, mb string) (local, domain string) {
	t.Helper()
	local, domain, ok := strings.Cut(mb, "@")
	if !ok || !safeName(local) || !safeName(domain) {
		t.Fatalf("mailbox %q: want local@domain of letters, digits, '.', '-' and '_'", mb)
	}
	if domain != Domain {
		t.Fatalf("mailbox %q: the backend only serves %s", mb, Domain)
	}
	return local, domain
}

func safeName(s string) bool {
	if s == "" || s[0] == '.' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Messages returns the raw message files delivered to mailbox so far
// (Maildir new/ and cur/), oldest first by file name.
func (b *Backend) Messages(mailbox string) []string {
	local, domain, _ := strings.Cut(mailbox, "@")
	box := filepath.Join(b.Dir, "mail", domain, local)
	var names []string
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(box, sub))
		for _, e := range entries {
			if e.Type().IsRegular() {
				names = append(names, filepath.Join(box, sub, e.Name()))
			}
		}
	}
	sort.Slice(names, func(i, j int) bool { return filepath.Base(names[i]) < filepath.Base(names[j]) })
	var msgs []string
	for _, n := range names {
		if data, err := os.ReadFile(n); err == nil {
			msgs = append(msgs, string(data))
		}
	}
	return msgs
}

// AllMessages returns how many messages were delivered to any mailbox.
func (b *Backend) AllMessages() int {
	n := 0
	filepath.WalkDir(filepath.Join(b.Dir, "mail"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// WaitMessages polls mailbox until it holds at least n messages and returns
// them. It fails the test with the maillog's tail on timeout.
func (b *Backend) WaitMessages(t testing.TB, mailbox string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := b.Messages(mailbox)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend: %s has %d messages after %v, want %d; backend maillog tail:\n%s", mailbox, len(msgs), timeout, n, tail(b.Log(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Sender is a Postfix whose only job is to deliver everything to one relay.
type Sender struct {
	*Postfix
	Relay    string // host:port of the relay it delivers to
	BindAddr string // source address of its SMTP connections
}

// StartSender starts a Postfix that relays all mail to relay (host:port,
// moat in the tests) from source address bindIP, with a retry schedule of
// seconds: minimal_backoff_time 2s, maximal_backoff_time 4s,
// queue_run_delay 1s. It has no listener; Send submits through sendmail.
// It opens a new connection for every delivery (no connection cache), so
// every message meets moat afresh. TLS is off; Set changes any of this.
func StartSender(t testing.TB, relay string, bindIP string) *Sender {
	t.Helper()
	requirePostfix(t)
	host, port, err := net.SplitHostPort(relay)
	if err != nil {
		t.Fatalf("sender: relay %q: %v", relay, err)
	}
	if net.ParseIP(bindIP) == nil {
		t.Fatalf("sender: bind address %q is not an IP address", bindIP)
	}
	dir := instanceDir(t, "sender")
	// inet_interfaces must name an address of a real interface, and
	// 127.0.0.20 is only routed to lo; smtp_bind_address picks the source.
	mainCF := commonMainCF(dir, "mail.sender.test", "127.0.0.1") + fmt.Sprintf(`relayhost = [%s]:%s
smtp_bind_address = %s
default_transport = smtp
relay_transport = smtp
smtp_tls_security_level = none
smtp_connection_cache_on_demand = no
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 1s
`, host, port, bindIP)
	s := &Sender{Relay: relay, BindAddr: bindIP}
	s.Postfix = startPostfix(t, "sender", dir, mainCF, masterCF, nil)
	return s
}

// Send submits one message with sendmail, as a local program would.
// to may name several recipients, separated by commas; flags go to
// sendmail before them ("-N", "success,failure" asks for DSN).
func (s *Sender) Send(t testing.TB, from, to, subject, body string, flags ...string) {
	t.Helper()
	rcpts := strings.Split(to, ",")
	msg := fmt.Sprintf("From: <%s>\nTo: <%s>\nSubject: %s\n\n%s\n", from, strings.Join(rcpts, ">, <"), subject, body)
	args := append([]string{"-C", s.Config, "-i", "-f", from}, flags...)
	cmd := exec.Command(tools.sendmail, append(append(args, "--"), rcpts...)...)
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sender: sendmail: %v\n%s", err, out)
	}
}

// QueueEmpty reports whether the sender holds no message in any queue.
func (s *Sender) QueueEmpty() bool {
	n := 0
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		filepath.WalkDir(filepath.Join(s.Queue, q), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
	}
	return n == 0
}

// WaitQueueEmpty polls until the sender's queue is empty and fails the
// test with the maillog's tail on timeout.
func (s *Sender) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !s.QueueEmpty() {
		if time.Now().After(deadline) {
			t.Fatalf("sender: queue not empty after %v; maillog tail:\n%s", timeout, tail(s.Log(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Flush makes the sender retry every deferred message now, whatever its
// retry schedule says.
func (s *Sender) Flush(t testing.TB) {
	t.Helper()
	if out, err := exec.Command(tools.postq, "-c", s.Config, "-f").CombinedOutput(); err != nil {
		t.Fatalf("sender: postqueue -f: %v\n%s", err, out)
	}
}
