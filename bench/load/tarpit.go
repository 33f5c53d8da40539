package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"moat/internal/admin"
)

// tarpitCmd holds n black connections and measures what they cost moat.
//
// Every connection sends, right after connecting, one EHLO and a long run
// of pipelined NOOPs, then never writes again. The tarpit answers them one
// by one, one byte per stutter, so every connection keeps stuttering for
// the whole run without the load tool doing anything for it. With -data,
// it sends a message instead, which the tarpit reads a few bytes a
// stutter once its replies are out: the other half of a held bot's cost. Connections
// outside the sample are never read: the few bytes a second they receive
// wait in the kernel's receive buffer, and the load tool keeps no goroutine
// and no buffer for them.
func tarpitCmd(args []string) error {
	fs := newFlags("tarpit")
	addr := fs.String("addr", "127.0.0.1:2525", "moat's listen address")
	src := fs.String("src", "127.64.0.0/10", "black source prefix (moat's blacklist must cover it)")
	n := fs.Int("n", 19000, "connections to hold")
	perIP := fs.Int("per-ip", 10, "connections per source address (below limits.max_conns_per_ip)")
	sample := fs.Int("sample", 500, "connections whose byte gaps are measured")
	noops := fs.Int("noops", 400, "NOOPs pipelined after EHLO: 14 bytes of reply each, so 14 stutters")
	data := fs.Int("data", 0, "instead of NOOPs: MAIL, RCPT, DATA and this many bytes of a message that never ends, which the tarpit reads at tarpit.data_pace a stutter (give -settle the time the replies before it take)")
	parallel := fs.Int("parallel", 256, "dials in flight")
	settle := fs.Duration("settle", 10*time.Second, "wait after moat holds them all, before measuring")
	window := fs.Duration("window", 60*time.Second, "measurement window")
	pid := fs.Int("pid", 0, "moat's process id (for /proc/PID/status and /proc/PID/stat)")
	sock := fs.String("admin", "", "moat's admin socket, to count held connections on the server side")
	extra := fs.Int("extra", 300, "black connections opened after the n, to hit the tarpit cap")
	greySrc := fs.String("grey-src", "127.0.0.2", "a grey source address, probed while the tarpit is full")
	whiteSrc := fs.String("white-src", "", "a white source address (whitelisted, backend running), probed while the tarpit is full; empty: skip")
	probes := fs.Int("probes", 20, "grey and white banner probes")
	fs.Parse(args)
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	if *pid <= 0 || *sock == "" {
		return errors.New("-pid and -admin are required: moat's memory, CPU and held count are read on its side")
	}
	srcs, err := parseSources(*src)
	if err != nil {
		return err
	}
	if need := (*n + *extra + *perIP - 1) / *perIP; need > int(srcs.size) {
		return fmt.Errorf("-src %s has %d usable addresses; %d connections at %d per address need %d", *src, srcs.size, *n+*extra, *perIP, need)
	}
	ac := admin.NewClient(*sock)
	status := func() (admin.Status, error) {
		var st admin.Status
		err := ac.Do("GET", "/v1/status", nil, &st)
		return st, err
	}
	st0, err := status()
	if err != nil {
		return err
	}
	rssIdle, err := procStatus(*pid, "VmRSS")
	if err != nil {
		return err
	}
	fmt.Printf("moat pid %d idle: VmRSS %d kB, held %d\n", *pid, rssIdle, st0.TarpitHeld)

	payload := "EHLO bot.bench.example\r\n" + strings.Repeat("NOOP\r\n", *noops)
	if *data > 0 {
		payload = "EHLO bot.bench.example\r\nMAIL FROM:<offer@bot.bench.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n" +
			"Subject: offer\r\n\r\n" + strings.Repeat("x", *data)
	}
	conns := make([]*net.TCPConn, *n)
	samples := make([]*gapSampler, 0, *sample)
	every := max(1, *n/max(1, *sample))
	var dialErrs atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range *n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := dialFrom(srcs.addr(i / *perIP), *addr, 10*time.Second)
			if err == nil {
				_, err = io.WriteString(c, payload)
			}
			if err != nil {
				dialErrs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				if c != nil {
					c.Close()
				}
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	fmt.Printf("dialed %d in %s (%d errors%s)\n", *n, time.Since(t0).Round(time.Millisecond), dialErrs.Load(), errSuffix(&firstErr))

	// The client side is no proof: the kernel completes handshakes
	// beyond the accept queue. Count on the server side.
	deadline := time.Now().Add(2 * time.Minute)
	var st admin.Status
	for {
		if st, err = status(); err != nil {
			return err
		}
		if st.TarpitHeld >= *n-int(dialErrs.Load()) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("server side: tarpit_held %d, connections %d, after %s\n", st.TarpitHeld, st.Connections, time.Since(t0).Round(time.Millisecond))

	// Start the samplers now, so they drain what arrived while dialing;
	// they record gaps only inside the window.
	for i := 0; i < *n && len(samples) < *sample; i += every {
		if conns[i] != nil {
			g := &gapSampler{c: conns[i]}
			samples = append(samples, g)
			go g.run()
			conns[i] = nil
		}
	}
	// The others leave the Go runtime's epoll set: every byte that
	// reaches a watched socket wakes the watcher, and on loopback that
	// wake-up runs inside moat's sendto and is billed to moat. On a real
	// network the bots' kernels pay for their own receiving.
	fds, err := detach(conns)
	if err != nil {
		return err
	}
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	time.Sleep(*settle)

	rss, err := procStatus(*pid, "VmRSS")
	if err != nil {
		return err
	}
	cpu0, _ := procCPU(*pid)
	self0, _ := procCPU(0)
	w0 := time.Now()
	for _, g := range samples {
		g.open(w0)
	}
	time.Sleep(*window)
	w1 := time.Now()
	var gaps []time.Duration
	var stalled int
	for _, g := range samples {
		gs, last := g.close(w1)
		gaps = append(gaps, gs...)
		// A connection silent since before the window ended has a gap
		// the list does not show yet: count it as one.
		gaps = append(gaps, w1.Sub(last))
		if w1.Sub(last) > 5*time.Second {
			stalled++
		}
	}
	cpu1, _ := procCPU(*pid)
	self1, _ := procCPU(0)
	rssEnd, _ := procStatus(*pid, "VmRSS")
	st, err = status()
	if err != nil {
		return err
	}
	held := st.TarpitHeld
	secs := w1.Sub(w0).Seconds()
	fmt.Printf("\n== tarpit capacity ==\n")
	fmt.Printf("held (server side)      %d\n", held)
	fmt.Printf("moat VmRSS              idle %d kB, held %d kB (after window %d kB)\n", rssIdle, rss, rssEnd)
	perConn := float64(max(rss, rssEnd)-rssIdle) * 1024 / float64(max(held, 1))
	fmt.Printf("RSS per held connection %.0f B  (target <= 4096 B: %.2fx of budget)\n", perConn, perConn/4096)
	cpuPct := 100 * (cpu1 - cpu0).Seconds() / secs
	fmt.Printf("moat CPU                %.1f%% of one core over %.0fs  (target <= 25%%: %.2fx of budget)\n", cpuPct, secs, cpuPct/25)
	fmt.Printf("load tool CPU           %.1f%% of one core\n", 100*(self1-self0).Seconds()/secs)
	fmt.Printf("byte gaps (%d sampled)  %s\n", len(samples), summary(gaps))
	fmt.Printf("sampled conns silent >5s at window end: %d\n", stalled)

	// The reserve: more black connections than the tarpit takes, then
	// a grey and a white host while it is full.
	fmt.Printf("\n== at the cap ==\n")
	refusedBefore := st.TarpitRefused
	var closedFast, heldExtra, other atomic.Int64
	var closeTimes []time.Duration
	var mu sync.Mutex
	var extraConns []*net.TCPConn
	for i := range *extra {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Timed from before the dial: the server may close before
			// the dial returns here.
			start := time.Now()
			c, err := dialFrom(srcs.addr((*n+*perIP-1) / *perIP + i), *addr, 10*time.Second)
			if err != nil {
				other.Add(1)
				return
			}
			c.SetReadDeadline(start.Add(3 * time.Second))
			var b [1]byte
			_, err = c.Read(b[:])
			switch {
			case err == nil: // a banner byte: held
				heldExtra.Add(1)
				mu.Lock()
				extraConns = append(extraConns, c)
				mu.Unlock()
				return
			case errors.Is(err, io.EOF) || isReset(err):
				closedFast.Add(1)
				mu.Lock()
				closeTimes = append(closeTimes, time.Since(start))
				mu.Unlock()
			default:
				other.Add(1)
			}
			c.Close()
		}()
	}
	wg.Wait()
	fmt.Printf("extra black connections %d: %d held (room left under tarpit.max_conns), %d closed at once, %d other\n",
		*extra, heldExtra.Load(), closedFast.Load(), other.Load())
	fmt.Printf("dial to close (refused) %s\n", summary(closeTimes))
	gp, err := probeBanners(netip.MustParseAddr(*greySrc), *addr, *probes)
	if err != nil {
		return fmt.Errorf("grey probe from %s: %w", *greySrc, err)
	}
	fmt.Printf("grey banner while full  %s\n", summary(gp))
	if *whiteSrc != "" {
		wp, err := probeBanners(netip.MustParseAddr(*whiteSrc), *addr, *probes)
		if err != nil {
			return fmt.Errorf("white probe from %s: %w", *whiteSrc, err)
		}
		fmt.Printf("white banner while full %s\n", summary(wp))
	}
	st, err = status()
	if err != nil {
		return err
	}
	fmt.Printf("moat status             tarpit_held %d, tarpit_refused %d (+%d), refused %v, sessions %v\n",
		st.TarpitHeld, st.TarpitRefused, st.TarpitRefused-refusedBefore, st.Refused, st.Sessions)
	for _, g := range samples {
		g.c.Close()
	}
	for _, c := range extraConns {
		c.Close()
	}
	return nil
}

func errSuffix(v *atomic.Value) string {
	if s, ok := v.Load().(string); ok {
		return "; first: " + s
	}
	return ""
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && strings.Contains(oe.Err.Error(), "reset")
}

// probeBanners connects n times from src and times the complete banner
// line, then says QUIT.
func probeBanners(src netip.Addr, addr string, n int) ([]time.Duration, error) {
	var ds []time.Duration
	for range n {
		start := time.Now()
		c, err := dialFrom(src, addr, 10*time.Second)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(start.Add(10 * time.Second))
		line, err := bufio.NewReaderSize(c, 512).ReadString('\n')
		d := time.Since(start)
		io.WriteString(c, "QUIT\r\n")
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("banner: %w", err)
		}
		if !strings.HasPrefix(line, "220") {
			return nil, fmt.Errorf("banner: %q", line)
		}
		ds = append(ds, d)
		time.Sleep(10 * time.Millisecond)
	}
	return ds, nil
}

// gapSampler reads one held connection and records the time between
// consecutive bytes during the measurement window. Bytes that arrive in
// one read count as gaps of zero after the first: the sampler was late,
// not the tarpit early, so they do not hide a long gap.
type gapSampler struct {
	c *net.TCPConn

	mu     sync.Mutex
	on     bool
	last   time.Time
	gaps   []time.Duration
	closed bool
}

func (g *gapSampler) run() {
	var buf [64]byte
	for {
		k, err := g.c.Read(buf[:])
		now := time.Now()
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return
		}
		if k > 0 {
			if g.on && !g.last.IsZero() {
				g.gaps = append(g.gaps, now.Sub(g.last))
				for range k - 1 {
					g.gaps = append(g.gaps, 0)
				}
			}
			g.last = now
		}
		g.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// open starts recording at w0: the first gap counts from the last byte
// before the window, or from w0 if there was none.
func (g *gapSampler) open(w0 time.Time) {
	g.mu.Lock()
	g.on = true
	if g.last.IsZero() {
		g.last = w0
	}
	g.mu.Unlock()
}

func (g *gapSampler) close(time.Time) ([]time.Duration, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.on = false
	return g.gaps, g.last
}

// detach turns each connection into a bare descriptor that no epoll set
// watches: a dup made with a raw dup(2) (net's File would register the dup
// with the runtime poller again), then Close of the original, which takes
// it out of the poller. The socket stays open through the dup.
func detach(conns []*net.TCPConn) ([]int, error) {
	var fds []int
	for _, c := range conns {
		if c == nil {
			continue
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return fds, err
		}
		var dup int
		var derr error
		if err := rc.Control(func(fd uintptr) { dup, derr = syscall.Dup(int(fd)) }); err != nil {
			return fds, err
		}
		if derr != nil {
			return fds, fmt.Errorf("dup: %w", derr)
		}
		c.Close()
		fds = append(fds, dup)
	}
	return fds, nil
}
