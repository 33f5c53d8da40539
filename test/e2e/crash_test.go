package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/admin"
)

// greylistLoad plays many grey hosts against moat until ctx is done: each
// session comes from a new address in 127.1.0.0/16 and pipelines a MAIL and
// twenty RCPTs, every one a new triplet for moat to store. It returns the
// number of RCPTs moat answered with 451 4.7.1 (a triplet written).
func greylistLoad(ctx context.Context, addr string, workers int) *atomic.Int64 {
	var n atomic.Int64
	var seq atomic.Int64
	for w := 0; w < workers; w++ {
		go func() {
			for ctx.Err() == nil {
				i := seq.Add(1)
				ip := fmt.Sprintf("127.1.%d.%d", (i/250)%250, i%250+1)
				n.Add(int64(greylistSession(addr, ip, i)))
			}
		}()
	}
	return &n
}

// greylistSession is one pipelined grey session; it returns how many RCPTs
// got 451 4.7.1. Any error ends it quietly: moat may be killed under it.
func greylistSession(addr, ip string, i int64) int {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if !readBanner(r) {
		return 0
	}
	var b strings.Builder
	fmt.Fprintf(&b, "EHLO load%d.test\r\nMAIL FROM:<s%d@load.test>\r\n", i, i)
	for j := 0; j < 20; j++ {
		fmt.Fprintf(&b, "RCPT TO:<r%d-%d@example.test>\r\n", i, j)
	}
	b.WriteString("QUIT\r\n")
	if _, err := c.Write([]byte(b.String())); err != nil {
		return 0
	}
	n := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return n
		}
		if strings.HasPrefix(line, "451 4.7.1") {
			n++
		}
	}
}

// operatorLoad makes hosts black through the admin API until ctx is done,
// from workers goroutines plus one running the moat command line, and
// records every change that was acknowledged. Addresses come from
// 127.3.0.0/16, apart from the load's.
type operatorLoad struct {
	mu    sync.Mutex
	acked []string
	seq   atomic.Int64
	wg    sync.WaitGroup
}

func (o *operatorLoad) next() string {
	i := o.seq.Add(1)
	return fmt.Sprintf("127.3.%d.%d", (i/250)%250, i%250+1)
}

func (o *operatorLoad) ack(ip string) {
	o.mu.Lock()
	o.acked = append(o.acked, ip)
	o.mu.Unlock()
}

func (o *operatorLoad) run(ctx context.Context, m *Moat, workers int) {
	socket := filepath.Join(m.DataDir, "moat.sock")
	for w := 0; w < workers; w++ {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			c := admin.NewClient(socket)
			for ctx.Err() == nil {
				ip := o.next()
				if c.Do("POST", "/v1/hosts", map[string]string{"ip": ip, "class": "black"}, nil) == nil {
					o.ack(ip)
				}
			}
		}()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for ctx.Err() == nil {
			ip := o.next()
			cmd := exec.Command(m.bin, "-c", m.Config, "hosts", "black", ip)
			// When the daemon has just been killed, the command line
			// opens the store itself: an acknowledgement from there is
			// as binding as the daemon's.
			out, err := cmd.CombinedOutput()
			if err == nil && bytes.Contains(out, []byte(ip+" is black")) {
				o.ack(ip)
			}
		}
	}()
}

// moat is killed (SIGKILL) while it stores thousands of greylist entries a
// second and operators make hosts black; it starts again on the same file
// without help, and every change it acknowledged is there. Three rounds.
func TestCrashStateSurvivesKill(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(`
[greylist]
greet_delay = "0s"
min_retry = "1m"
retry_window = "1h"
[limits]
max_conns_per_ip = 50
`), "{{backend}}", b.Addr)

	var ops operatorLoad
	var rcpts int64
	for round := 1; round <= 3; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		n := greylistLoad(ctx, m.Addr, 16)
		ops.run(ctx, m, 4)
		// Kill at a moment that has nothing to do with the store's
		// commit cycle.
		time.Sleep(1500*time.Millisecond + time.Duration(round)*137*time.Millisecond)
		m.Kill(t)
		cancel()
		ops.wg.Wait()
		rcpts += n.Load()
		t.Logf("round %d: %d triplets greylisted so far (%.0f/s in this round), %d operator changes acknowledged so far",
			round, rcpts, float64(n.Load())/1.5, len(ops.acked))

		// A SIGKILL leaves the socket file behind; start-up needs no
		// help with it or with the store.
		m.Start(t)
		hosts := m.Hosts(t)
		missing := 0
		for _, ip := range ops.acked {
			if hosts[ip] != "black" {
				missing++
				if missing <= 5 {
					t.Errorf("round %d: acknowledged change %s black is %q after the kill", round, ip, hosts[ip])
				}
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d acknowledged changes lost", round, missing, len(ops.acked))
		}
		// Greylist entries are committed in batches, so the last
		// fraction of a second before the kill may be gone, but what
		// was committed before is there.
		grey := 0
		for ip, class := range hosts {
			if class == "grey" && strings.HasPrefix(ip, "127.1.") {
				grey++
			}
		}
		if grey == 0 {
			t.Errorf("round %d: no grey host of the load survived the kill", round)
		}
	}
	if len(ops.acked) < 50 {
		t.Errorf("only %d operator changes acknowledged in all; the load did not run", len(ops.acked))
	}
	if rcpts < 1000 {
		t.Errorf("only %d triplets greylisted in all; the load did not run", rcpts)
	}
	// The greylist still works on the recovered store.
	c := Dial(t, "127.4.0.1", m.Addr)
	expect(t, c, "", 220)
	expect(t, c, "EHLO after.test", 250)
	expect(t, c, "MAIL FROM:<a@after.test>", 250)
	expect(t, c, "RCPT TO:<"+alice+">", 451)
	c.Close()
	if st := m.CLI(t, "status"); !strings.Contains(st, "running") {
		t.Errorf("moat status after the kills:\n%s", st)
	}
}

// runMoat runs "moat run" on m's config and returns its exit error and
// output, killing it if it has not exited within 20s.
func runMoat(t *testing.T, m *Moat) (error, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.bin, "run", "-c", m.Config)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("moat run on a damaged store did not exit within 20s; output:\n%s", out)
	}
	return err, string(out)
}

// A damaged or unusable store file stops moat at start-up with an exit
// status, a message that names the file and the way out, and no Go panic.
// The way out that the message and docs/operations.md give (move the file
// aside) works.
func TestCrashCorruptStore(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(""), "{{backend}}", b.Addr)
	m.CLI(t, "hosts", "black", "127.0.0.9")
	m.Stop(t)
	db := filepath.Join(m.DataDir, "moat.db")
	good, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(good) < 16384 {
		t.Fatalf("store file is %d bytes, want at least 4 pages", len(good))
	}
	garbage := make([]byte, 64<<10)
	rand.Read(garbage)
	pageGarbage := append([]byte(nil), good...)
	copy(pageGarbage[2*4096:], garbage[:len(good)-2*4096]) // meta pages intact, data pages noise
	metaGarbage := append([]byte(nil), good...)
	copy(metaGarbage[:8192], garbage) // both meta pages noise

	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		want  []string // all in the output
	}{
		{"random bytes", func(t *testing.T) { os.WriteFile(db, garbage, 0o600) }, []string{"not a valid moat store", "move it aside"}},
		{"text file", func(t *testing.T) {
			os.WriteFile(db, []byte("this is not a database\n"), 0o600)
		}, []string{"not a valid moat store", "move it aside"}},
		{"meta pages damaged", func(t *testing.T) { os.WriteFile(db, metaGarbage, 0o600) }, []string{"not a valid moat store", "move it aside"}},
		{"data pages damaged", func(t *testing.T) { os.WriteFile(db, pageGarbage, 0o600) }, []string{"not a valid moat store", "move it aside"}},
		{"truncated to its meta pages", func(t *testing.T) { os.WriteFile(db, good[:8192], 0o600) }, []string{"not a valid moat store", "move it aside"}},
		{"truncated mid-file", func(t *testing.T) { os.WriteFile(db, good[:len(good)/2+100], 0o600) }, []string{"not a valid moat store", "move it aside"}},
		{"empty (0 bytes)", func(t *testing.T) { os.WriteFile(db, nil, 0o600) }, []string{"not a valid moat store", "it is empty", "move it aside"}},
		{"directory", func(t *testing.T) { os.Mkdir(db, 0o700) }, []string{"is a directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll(db)
			tc.setup(t)
			defer os.RemoveAll(db)
			err, out := runMoat(t, m)
			if err == nil {
				t.Fatalf("moat run exited 0 on a %s store; output:\n%s", tc.name, out)
			}
			for _, bad := range []string{"panic", "goroutine ", "SIGBUS", "SIGSEGV", "fatal error"} {
				if strings.Contains(out, bad) {
					t.Fatalf("moat run on a %s store crashed (%q) instead of saying what is wrong:\n%s", tc.name, bad, tail(out, 30))
				}
			}
			if !strings.Contains(out, db) {
				t.Errorf("the error does not name the file %s:\n%s", db, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the error does not say %q:\n%s", w, out)
				}
			}
			if lines := strings.Count(strings.TrimSpace(out), "\n") + 1; lines > 3 {
				t.Errorf("the error takes %d lines; want a short message:\n%s", lines, out)
			}
		})
	}

	// The way out: move the file aside; moat starts empty.
	if err := os.WriteFile(db, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(db, db+".broken"); err != nil {
		t.Fatal(err)
	}
	m.Start(t)
	if class, ok := m.Hosts(t)["127.0.0.9"]; ok {
		t.Errorf("a fresh store remembers 127.0.0.9 as %s", class)
	}
	m.Stop(t)

	// A store taken over by another process is named too, and moat
	// does not wait for it forever.
	if err := os.WriteFile(db, good, 0o600); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("flock", "--exclusive", db, "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatalf("flock: %v", err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	time.Sleep(200 * time.Millisecond) // flock takes the lock
	err, out := runMoat(t, m)
	if err == nil || !strings.Contains(out, "another moat process holds it") || !strings.Contains(out, db) {
		t.Errorf("store locked by another process: exit %v, output:\n%s", err, out)
	}
}
