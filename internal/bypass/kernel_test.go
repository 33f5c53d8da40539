package bypass

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
)

// The kernel tests run in this machine's own network namespace, on
// loopback: the rules sit on the output hook too, which is where locally
// made connections meet NAT, so a test connection from 127.0.0.5 to moat's
// port is redirected exactly as a client's from outside would be on the
// prerouting hook. Every test makes a table of its own (moattest_PID_N),
// listens on ports the kernel picks, and deletes its table at the end; no
// other table is touched.

// needKernel fails a test run without root, as the end-to-end tests do
// (test/run.sh and CI run as root), and skips one on a kernel without
// nf_tables, which no package installs, saying why.
func needKernel(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("kernel bypass tests need root (CAP_NET_ADMIN) to change nf_tables: run them as root (CI does)")
	}
	c, err := nftables.New()
	if err != nil {
		t.Skipf("kernel bypass tests need nf_tables: netlink: %v", err)
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		t.Skipf("kernel bypass tests need nf_tables in the kernel: %v", err)
	}
}

var tableSeq atomic.Int32

// listener answers every connection with its name and closes it.
type listener struct {
	ln   net.Listener
	name string
}

func listen(t *testing.T, name string) *listener { return listenOn(t, name, "127.0.0.1:0") }

func listenOn(t *testing.T, name, addr string) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen on %s: %v", addr, err)
	}
	l := &listener{ln: ln, name: name}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return l
}

func (l *listener) port() uint16 { return uint16(l.ln.Addr().(*net.TCPAddr).Port) }

// rig is moat's port and the bypass listener, with a table between them.
type rig struct {
	moat, bypass *listener
	tab          *Table
}

func newRig(t *testing.T) *rig {
	t.Helper()
	needKernel(t)
	r := &rig{moat: listen(t, "moat"), bypass: listen(t, "bypass")}
	r.tab = r.open(t)
	if err := r.tab.Install(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.tab.Delete(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return r
}

// open opens another handle on the rig's table, as a restarted moat does.
func (r *rig) open(t *testing.T) *Table {
	t.Helper()
	name := fmt.Sprintf("moattest_%d_%d", os.Getpid(), tableSeq.Add(1))
	if r.tab != nil {
		name = r.tab.cfg.Table
	}
	tab, err := Open(Config{Table: name, Listen: netip.AddrPortFrom(netip.IPv4Unspecified(), r.moat.port()), Port: r.bypass.port()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// reach connects from src to moat's port and says who answered.
func (r *rig) reach(t *testing.T, src string) string {
	t.Helper()
	a := netip.MustParseAddr(src)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: a.AsSlice()}, Timeout: 5 * time.Second}
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.moat.port())
	if a.Is6() {
		dst = netip.AddrPortFrom(netip.IPv6Loopback(), r.moat.port())
	}
	c, err := d.Dial("tcp", dst.String())
	if err != nil {
		t.Fatalf("connect from %s: %v", src, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("connect from %s: read: %v", src, err)
	}
	var who, peer string
	fmt.Sscan(line, &who, &peer)
	return who
}

func host(s string) netip.Prefix {
	a := netip.MustParseAddr(s)
	return netip.PrefixFrom(a, a.BitLen())
}

func TestWhiteSourceReachesBypassGreyReachesMoat(t *testing.T) {
	r := newRig(t)
	if err := r.tab.Put(Element{Prefix: host("127.0.0.5"), Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := r.tab.Put(Element{Prefix: netip.MustParsePrefix("127.0.9.0/24")}); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]string{
		"127.0.0.5": "bypass", // white host
		"127.0.9.7": "bypass", // in a white network
		"127.0.0.6": "moat",   // grey
		"127.0.8.7": "moat",   // grey, beside the network
	} {
		if got := r.reach(t, src); got != want {
			t.Errorf("connection from %s reached %s, want %s", src, got, want)
		}
	}
	if err := r.tab.Check(); err != nil {
		t.Errorf("Check after Install: %v", err)
	}
}

func TestIPv6WhiteSourceReachesBypass(t *testing.T) {
	r := newRig(t)
	// The same ports on ::1 (a test without IPv6 loopback is skipped).
	listenOn(t, "moat", fmt.Sprintf("[::1]:%d", r.moat.port()))
	listenOn(t, "bypass", fmt.Sprintf("[::1]:%d", r.bypass.port()))
	if got := r.reach(t, "::1"); got != "moat" {
		t.Fatalf("before: ::1 reached %s, want moat", got)
	}
	if err := r.tab.Put(Element{Prefix: host("::1"), Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "::1"); got != "bypass" {
		t.Errorf("white ::1 reached %s, want bypass", got)
	}
	sz, err := r.tab.Count()
	if err != nil {
		t.Fatal(err)
	}
	if sz.Hosts6 != 1 || sz.Hosts4 != 0 {
		t.Errorf("Count = %+v, want one IPv6 host", sz)
	}
}

func TestRemovedHostReachesMoatNextConnection(t *testing.T) {
	r := newRig(t)
	p := host("127.0.0.5")
	if err := r.tab.Put(Element{Prefix: p, Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "127.0.0.5"); got != "bypass" {
		t.Fatalf("white host reached %s", got)
	}
	if err := r.tab.Remove(p); err != nil {
		t.Fatal(err)
	}
	if got := r.reach(t, "127.0.0.5"); got != "moat" {
		t.Errorf("after Remove the host reached %s, want moat", got)
	}
	if err := r.tab.Remove(p); err != nil {
		t.Errorf("removing an absent host: %v", err)
	}
}

// An open connection keeps going where it went when its host leaves the
// set: the kernel decided at its first packet.
func TestRemovalDoesNotCutOpenConnection(t *testing.T) {
	r := newRig(t)
	echoListener(t, r.bypass)
	p := host("127.0.0.5")
	if err := r.tab.Put(Element{Prefix: p, Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	say := session(t, "127.0.0.5", r.moat.port())
	if got := say("one"); got != "bypass one\n" {
		t.Fatalf("first line: %q", got)
	}
	if err := r.tab.Remove(p); err != nil {
		t.Fatal(err)
	}
	if got := say("two"); got != "bypass two\n" {
		t.Errorf("after Remove the open session answered %q, want the bypass listener still", got)
	}
}

// session connects from src to moat's port, reads the greeting of the
// bypass listener's echo server, and returns a function that sends a line
// and returns the answer.
func session(t *testing.T, src string, port uint16) func(string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: netip.MustParseAddr(src).AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "bypass ") {
		t.Fatalf("session from %s: greeting %q, %v: want the bypass listener's", src, l, err)
	}
	return func(s string) string {
		t.Helper()
		fmt.Fprintf(c, "%s\n", s)
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("session from %s: %v", src, err)
		}
		return l
	}
}

// echoListener makes l's port an echo server: it greets as listen's
// servers do, then answers every line with the line after "bypass ".
func echoListener(t *testing.T, l *listener) *listener {
	t.Helper()
	port := l.port()
	l.ln.Close()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "bypass %s\n", c.RemoteAddr())
				br := bufio.NewReader(c)
				for {
					s, err := br.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprintf(c, "bypass %s", s)
				}
			}()
		}
	}()
	return &listener{ln: ln, name: "bypass"}
}

func TestElementsCarryTheirTimeout(t *testing.T) {
	r := newRig(t)
	if err := r.tab.Put(Element{Prefix: host("127.0.0.5"), Timeout: 90 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := r.tab.Put(Element{Prefix: host("127.0.0.6")}); err != nil {
		t.Fatal(err)
	}
	if err := r.tab.Put(Element{Prefix: netip.MustParsePrefix("127.0.9.0/24"), Timeout: 3 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	// Renewing replaces the timeout.
	if err := r.tab.Put(Element{Prefix: host("127.0.0.5"), Timeout: 5 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	got := kernelTimeouts(t, r.tab)
	want := map[string]time.Duration{"127.0.0.5": 5 * time.Hour, "127.0.0.6": 0, "127.0.9.0": 3 * time.Hour}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s is not in the kernel's sets", k)
			continue
		}
		if g != w {
			t.Errorf("%s: timeout %v in the kernel, want %v", k, g, w)
		}
	}
}

// kernelTimeouts reads every element's timeout, rounded to the minute.
func kernelTimeouts(t *testing.T, tab *Table) map[string]time.Duration {
	t.Helper()
	out := map[string]time.Duration{}
	for _, s := range tab.set {
		es, err := tab.conn.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.IntervalEnd {
				continue
			}
			a, _ := netip.AddrFromSlice(e.Key)
			out[a.String()] = e.Timeout.Round(time.Minute)
		}
	}
	return out
}

func TestSyncRebuildsDeletedTable(t *testing.T) {
	r := newRig(t)
	want := []Element{{Prefix: host("127.0.0.5"), Timeout: time.Hour}, {Prefix: netip.MustParsePrefix("127.0.9.0/24")}}
	if err := r.tab.Sync(want); err != nil {
		t.Fatal(err)
	}
	// By hand, as an operator's "nft delete table inet NAME".
	r.tab.conn.DelTable(r.tab.tab)
	if err := r.tab.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := r.tab.Check(); err == nil {
		t.Fatal("Check passes with the table deleted")
	}
	if got := r.reach(t, "127.0.0.5"); got != "moat" {
		t.Fatalf("with the table gone, the white host reached %s", got)
	}
	if err := r.tab.Sync(want); err != nil {
		t.Fatal(err)
	}
	if err := r.tab.Check(); err != nil {
		t.Errorf("Check after Sync: %v", err)
	}
	for src, w := range map[string]string{"127.0.0.5": "bypass", "127.0.9.1": "bypass", "127.0.0.6": "moat"} {
		if got := r.reach(t, src); got != w {
			t.Errorf("after Sync, %s reached %s, want %s", src, got, w)
		}
	}
}

func TestSyncRemovesWhatStoreNoLongerHolds(t *testing.T) {
	r := newRig(t)
	if err := r.tab.Sync([]Element{{Prefix: host("127.0.0.5")}, {Prefix: host("127.0.0.6")}, {Prefix: netip.MustParsePrefix("127.0.9.0/24")}}); err != nil {
		t.Fatal(err)
	}
	// A restarted moat: a new handle that knows nothing of the kernel.
	again := r.open(t)
	if err := again.Sync([]Element{{Prefix: host("127.0.0.6"), Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	for src, w := range map[string]string{"127.0.0.5": "moat", "127.0.0.6": "bypass", "127.0.9.1": "moat"} {
		if got := r.reach(t, src); got != w {
			t.Errorf("after Sync, %s reached %s, want %s", src, got, w)
		}
	}
	if got := kernelTimeouts(t, again)["127.0.0.6"]; got != time.Hour {
		t.Errorf("renewed host's timeout %v, want 1h", got)
	}
}

func TestNestedNetworksAndCheckNamesChange(t *testing.T) {
	r := newRig(t)
	// A network inside another: the interval set keeps the outer one.
	for _, p := range []string{"127.0.9.128/25", "127.0.8.0/23"} {
		if err := r.tab.Put(Element{Prefix: netip.MustParsePrefix(p)}); err != nil {
			t.Fatalf("Put %s: %v", p, err)
		}
	}
	for _, src := range []string{"127.0.9.200", "127.0.8.1"} {
		if got := r.reach(t, src); got != "bypass" {
			t.Errorf("%s reached %s, want bypass", src, got)
		}
	}
	// Another configuration (another bypass port) finds the rules wrong.
	other, err := Open(Config{Table: r.tab.cfg.Table, Listen: r.tab.cfg.Listen, Port: r.tab.cfg.Port + 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Check(); err == nil {
		t.Error("Check passes for a configuration whose bypass port differs from the kernel's rules")
	}
}

func TestDeleteLeavesForeignTable(t *testing.T) {
	needKernel(t)
	c, _ := nftables.New()
	name := fmt.Sprintf("moattest_%d_foreign", os.Getpid())
	tab := c.AddTable(&nftables.Table{Name: name, Family: nftables.TableFamilyINet})
	c.AddChain(&nftables.Chain{Name: "output", Table: tab})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DelTable(tab); c.Flush() })
	mt, err := Open(Config{Table: name, Listen: netip.MustParseAddrPort("0.0.0.0:2525"), Port: 10026}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := mt.Delete(); err == nil {
		t.Error("Delete removed a table that does not carry moat's rules")
	}
	if _, err := c.ListTableOfFamily(name, nftables.TableFamilyINet); err != nil {
		t.Errorf("the foreign table is gone: %v", err)
	}
}
