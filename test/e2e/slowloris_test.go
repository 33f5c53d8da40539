package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// vmRSS returns the resident memory of process pid in bytes, from
// /proc/PID/status.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// readBanner reads a whole 220 banner, all its lines: a client that talks
// before the last one is an early talker.
func readBanner(r *bufio.Reader) bool {
	for {
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "220") || len(line) < 4 {
			return false
		}
		if line[3] == ' ' {
			return true
		}
	}
}

// rawDial connects from localIP without failing the test: floods expect
// some connections to fail.
func rawDial(localIP, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 10 * time.Second}
	return d.Dial("tcp4", addr)
}

// Hundreds of slowloris clients (one byte every two seconds, never a whole
// command) and thousands of connections at once from one address do not
// stop moat from serving other hosts, white and grey; the per-address cap
// holds; and moat's memory stays bounded.
func TestFaultSlowlorisAndFlood(t *testing.T) {
	const (
		slowClients  = 300
		floodConns   = 3000
		perIPCap     = 20
		memoryBound  = 200 << 20
		slowInterval = 2 * time.Second
	)
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(fmt.Sprintf(`
[greylist]
greet_delay = "500ms"
min_retry = "1m"
retry_window = "1h"
[limits]
max_conns = 2000
max_conns_per_ip = %d
[tarpit]
max_conns = 1000
`, perIPCap)), "{{backend}}", b.Addr)
	m.CLI(t, "hosts", "white", "127.42.0.1")
	pid := m.Cmd.Process.Pid
	before := vmRSS(t, pid)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var conns sync.Map // every connection the test holds, closed at the end
	defer func() {
		close(stop)
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	}()

	// Slowloris: each from its own address, waits for the banner (a
	// byte before it would make it an early talker, another defence),
	// then drips a command one byte at a time and never ends it.
	var slowGreeted atomic.Int64
	for i := 0; i < slowClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := rawDial(fmt.Sprintf("127.40.%d.%d", i/200, i%200+1), m.Addr)
			if err != nil {
				return
			}
			conns.Store(c, nil)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if !readBanner(bufio.NewReader(c)) {
				return
			}
			slowGreeted.Add(1)
			drip := "EHLO slowloris.example.invalid.with.a.very.long.name\r\n"
			for j := 0; ; j = (j + 1) % (len(drip) - 2) { // never the CRLF
				if _, err := c.Write([]byte{drip[j]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(slowInterval):
				}
			}
		}()
	}

	// The flood: thousands of connections at once from one address, all
	// held open. Only perIPCap may be served; moat closes the rest at once.
	var floodBanners, floodClosed atomic.Int64
	sem := make(chan struct{}, 200)
	for i := 0; i < floodConns; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			c, err := rawDial("127.41.0.1", m.Addr)
			<-sem
			if err != nil {
				return
			}
			conns.Store(c, nil)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if readBanner(bufio.NewReader(c)) {
				floodBanners.Add(1)
			} else {
				floodClosed.Add(1)
			}
		}()
	}

	// Wait until moat has turned the flood away (its counter says so),
	// then serve other hosts while all of it is held.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st struct {
			Connections int64            `json:"connections"`
			Refused     map[string]int64 `json:"refused"`
		}
		if err := json.Unmarshal([]byte(m.CLI(t, "status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.Refused["max_conns_per_ip"] >= floodConns-perIPCap && slowGreeted.Load() >= slowClients*9/10 {
			t.Logf("moat holds %d connections; refused %d from the flooding address; %d slowloris clients greeted",
				st.Connections, st.Refused["max_conns_per_ip"], slowGreeted.Load())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d refused for max_conns_per_ip (want %d), %d of %d slowloris clients greeted",
				st.Refused["max_conns_per_ip"], floodConns-perIPCap, slowGreeted.Load(), slowClients)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A white host is spliced and delivered.
	c := spliced(t, m, "127.42.0.1")
	expect(t, c, "MAIL FROM:<bob@sender.test>", 250)
	expect(t, c, "RCPT TO:<"+alice+">", 250)
	expect(t, c, "DATA", 354)
	expect(t, c, messageBody("during the flood", 1000)+".", 250)
	expect(t, c, "QUIT", 221)
	c.Close()
	// A grey host gets its banner and its greylisting.
	c = Dial(t, "127.43.0.1", m.Addr)
	expect(t, c, "", 220)
	expect(t, c, "EHLO grey.test", 250)
	expect(t, c, "MAIL FROM:<carol@grey.test>", 250)
	expect(t, c, "RCPT TO:<"+alice+">", 451)
	expect(t, c, "QUIT", 221)
	c.Close()
	checkOutcome(t, b, "during the flood", outcome{code: 250})

	// Let the slowloris clients drip a few more bytes, then measure.
	time.Sleep(2 * slowInterval)
	peak := vmRSS(t, pid)
	t.Logf("moat VmRSS: %d KiB before, %d KiB with %d slowloris clients and %d flood connections held",
		before>>10, peak>>10, slowClients, floodConns)
	if peak > memoryBound {
		t.Errorf("moat uses %d MiB under the flood, want less than %d MiB", peak>>20, memoryBound>>20)
	}
	t.Logf("flood: %d greeted, %d closed by moat at once", floodBanners.Load(), floodClosed.Load())
	if n := floodBanners.Load(); n > perIPCap {
		t.Errorf("%d connections from one address were greeted, want at most max_conns_per_ip = %d", n, perIPCap)
	}
	if !m.running() {
		t.Fatal("moat died under the flood")
	}
}
