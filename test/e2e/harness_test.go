package e2e

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// These tests check the harness itself, with no moat in the path: a sender
// relaying straight to a backend, and a backend behind a PROXY header
// written here. The moat tests rely on everything they assert.

func TestHarnessSenderToBackend(t *testing.T) {
	b := StartBackend(t, false, "alice@example.test")
	s := StartSender(t, b.Addr, "127.0.0.20")

	s.Send(t, "bob@sender.test", "alice@example.test", "harness hello", "first line\n.\nlast line")
	msgs := b.WaitMessages(t, "alice@example.test", 1, 30*time.Second)
	s.WaitQueueEmpty(t, 10*time.Second)

	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(msgs))
	}
	for _, want := range []string{"Subject: harness hello", "first line\n.\nlast line", "Return-Path: <bob@sender.test>"} {
		if !strings.Contains(msgs[0], want) {
			t.Errorf("message lacks %q:\n%s", want, msgs[0])
		}
	}
	if got := b.ClientAddrs(); !reflect.DeepEqual(got, []string{"127.0.0.20"}) {
		t.Errorf("backend saw clients %q, want the sender's bind address only", got)
	}
	s.WaitLog(t, `status=sent`, 5*time.Second)
}

// The sender keeps a message it cannot deliver and delivers it on Flush
// once the relay is there: the greylisting tests depend on both.
func TestHarnessSenderRetries(t *testing.T) {
	addr := FreeAddr(t, "127.0.0.1")
	s := StartSender(t, addr, "127.0.0.21")
	s.Send(t, "bob@sender.test", "alice@example.test", "retry me", "body")
	s.WaitLog(t, `status=deferred`, 20*time.Second)
	if s.QueueEmpty() {
		t.Fatal("sender queue is empty after a deferral")
	}

	b := startBackend(t, addr, false, "", "alice@example.test")
	s.Flush(t)
	msgs := b.WaitMessages(t, "alice@example.test", 1, 30*time.Second)
	if !strings.Contains(msgs[0], "Subject: retry me") {
		t.Errorf("wrong message delivered:\n%s", msgs[0])
	}
	s.WaitQueueEmpty(t, 10*time.Second)
}

func TestHarnessProxyBackend(t *testing.T) {
	b := StartBackend(t, true, "alice@example.test")

	c := Dial(t, "127.0.0.1", b.Addr)
	src := netip.MustParseAddrPort("127.0.0.77:40000")
	c.Write(t, string(ProxyV2Header(src, netip.MustParseAddrPort(b.Addr))))
	expect(t, c, "", 220)
	expect(t, c, "EHLO client.test", 250)
	expect(t, c, "MAIL FROM:<carol@client.test>", 250)
	expect(t, c, "RCPT TO:<alice@example.test>", 250)
	expect(t, c, "DATA", 354)
	expect(t, c, "Subject: through the proxy header\r\n\r\nhello\r\n.", 250)

	// Unknown users are refused at RCPT, permanently.
	expect(t, c, "MAIL FROM:<carol@client.test>", 250)
	code, text := c.Cmd(t, "RCPT TO:<nobody@example.test>")
	if code != 550 || !strings.Contains(text, "5.1.1") {
		t.Errorf("RCPT to an unknown user: got %q, want 550 5.1.1", text)
	}
	expect(t, c, "QUIT", 221)
	c.Close()

	msgs := b.WaitMessages(t, "alice@example.test", 1, 20*time.Second)
	if !strings.Contains(msgs[0], "Subject: through the proxy header") {
		t.Errorf("wrong message delivered:\n%s", msgs[0])
	}
	if got := b.ClientAddrs(); !reflect.DeepEqual(got, []string{"127.0.0.77"}) {
		t.Errorf("backend saw clients %q, want the PROXY header's source 127.0.0.77 only", got)
	}
	if !strings.Contains(msgs[0], "[127.0.0.77]") {
		t.Errorf("Received header does not name 127.0.0.77:\n%s", msgs[0])
	}
}

// A backend that expects PROXY headers drops a client that does not send
// one: moat's backend_proxy_protocol and the backend must agree.
func TestHarnessProxyBackendWantsHeader(t *testing.T) {
	b := StartBackend(t, true, "alice@example.test")
	c := Dial(t, "127.0.0.1", b.Addr)
	c.Write(t, "EHLO client.test\r\n")
	if line, err := c.r.ReadString('\n'); err == nil && !strings.HasPrefix(line, "4") {
		t.Errorf("backend answered %q to a client without a PROXY header, want 4xx or nothing", line)
	}
	b.WaitLog(t, `haproxy read: unrecognized protocol header`, 5*time.Second)
	if n := b.CountLog(`client=`); n != 0 {
		t.Errorf("backend took %d messages from a client without a PROXY header", n)
	}
}

func expect(t *testing.T, c *Client, line string, want int) string {
	t.Helper()
	var code int
	var text string
	if line == "" {
		code, text = c.Reply(t)
	} else {
		code, text = c.Cmd(t, line)
	}
	if code != want {
		t.Fatalf("after %q: got %q, want %d", line, text, want)
	}
	return text
}

func TestHarnessProxyV2Header(t *testing.T) {
	got := ProxyV2Header(netip.MustParseAddrPort("127.0.0.77:40000"), netip.MustParseAddrPort("127.0.0.1:25"))
	want := []byte{
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
		0x21,       // v2, PROXY
		0x11,       // TCP over IPv4
		0x00, 0x0c, // 12 bytes of addresses
		127, 0, 0, 77, 127, 0, 0, 1,
		0x9c, 0x40, // 40000
		0x00, 0x19, // 25
	}
	if !bytes.Equal(got, want) {
		t.Errorf("ProxyV2Header:\n got % x\nwant % x", got, want)
	}
	got6 := ProxyV2Header(netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("[::2]:2"))
	if len(got6) != 16+36 || got6[13] != 0x21 || got6[15] != 36 {
		t.Errorf("IPv6 ProxyV2Header: % x", got6)
	}
}

func TestHarnessParseHosts(t *testing.T) {
	want := map[string]string{"127.0.0.20": "white", "127.0.0.31": "black", "10.0.0.0/8": "grey"}
	for _, tc := range []struct {
		name, in string
		want     map[string]string
	}{
		{"array", `[{"prefix":"127.0.0.20/32","class":"white"},{"prefix":"127.0.0.31/32","class":"black"},{"prefix":"10.0.0.0/8","class":"grey"}]`, want},
		{"wrapped", `{"hosts":[{"IP":"127.0.0.20","Class":"WHITE"},{"ip":"127.0.0.31","class":"black"},{"net":"10.0.0.0/8","class":"grey"}]}`, want},
		{"lines", "{\"Prefix\":\"127.0.0.20/32\",\"Class\":1,\"Reason\":\"x\"}\n{\"addr\":\"127.0.0.31\",\"class\":\"black\"}\n{\"address\":\"10.0.0.0/8\",\"class\":0}\n", want},
		{"empty array", `[]`, map[string]string{}},
		{"null", "null\n", map[string]string{}},
		{"nothing", "", map[string]string{}},
		{"empty wrapped", `{"hosts":[]}`, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHosts([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{`[{"class":"white"}]`, `{"prefix":"1.2.3.4"}`, `[1]`, `{`} {
		if got, err := ParseHosts([]byte(bad)); err == nil {
			t.Errorf("ParseHosts(%q) = %v, want an error", bad, got)
		}
	}
}
