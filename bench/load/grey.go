package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// greyCmd runs greylisting sessions as fast as c workers can: connect
// from the next source address, EHLO, MAIL, RCPT (expected to be deferred
// by a greylist; a server that accepts everything answers 250), QUIT. Each
// session has its own sender, so every RCPT is a triplet the server has
// not seen. It reports sessions/s and the latency of a whole session.
func greyCmd(args []string) error {
	fs := newFlags("grey")
	addr := fs.String("addr", "127.0.0.1:2525", "server address")
	src := fs.String("src", "127.16.0.0/12", "source prefix: one address per session, wrapping around")
	workers := fs.Int("c", 32, "concurrent sessions")
	dur := fs.Duration("d", 20*time.Second, "measured duration")
	warm := fs.Duration("warmup", 2*time.Second, "run this long before measuring")
	name := fs.String("name", "", "label for the summary line")
	pid := fs.Int("pid", 0, "server process id to report CPU of (0: none; comma lists are not supported)")
	fs.Parse(args)
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	srcs, err := parseSources(*src)
	if err != nil {
		return err
	}
	var seq atomic.Int64
	var measuring, stop atomic.Bool
	type result struct {
		lat   []time.Duration
		codes map[string]int
		errs  int
		first string
	}
	res := make([]result, *workers)
	var wg sync.WaitGroup
	for w := range *workers {
		res[w].codes = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &res[w]
			br := bufio.NewReaderSize(nil, 1024)
			for !stop.Load() {
				i := int(seq.Add(1))
				start := time.Now()
				code, err := greySession(br, srcs.addr(i), *addr, i)
				lat := time.Since(start)
				if !measuring.Load() {
					continue
				}
				if err != nil {
					r.errs++
					if r.first == "" {
						r.first = err.Error()
					}
					continue
				}
				r.lat = append(r.lat, lat)
				r.codes[code]++
			}
		}()
	}
	time.Sleep(*warm)
	cpu0, _ := procCPU(*pid)
	self0, _ := procCPU(0)
	busy0, _ := machineBusy()
	measuring.Store(true)
	t0 := time.Now()
	time.Sleep(*dur)
	measuring.Store(false)
	el := time.Since(t0)
	cpu1, _ := procCPU(*pid)
	self1, _ := procCPU(0)
	busy1, _ := machineBusy()
	stop.Store(true)
	wg.Wait()

	var lat []time.Duration
	codes := map[string]int{}
	errs, first := 0, ""
	for _, r := range res {
		lat = append(lat, r.lat...)
		for k, v := range r.codes {
			codes[k] += v
		}
		errs += r.errs
		if first == "" {
			first = r.first
		}
	}
	slices.Sort(lat)
	rate := float64(len(lat)) / el.Seconds()
	var cs []string
	for k, v := range codes {
		cs = append(cs, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(cs)
	// Everything the machine did besides the load tool is the server's
	// (all its processes, and the kernel's work on its behalf).
	secs := el.Seconds()
	load := (self1 - self0).Seconds() / secs
	server := (busy1-busy0).Seconds()/secs - load
	fmt.Printf("%-20s sessions/s %6.0f  p50 %s  p99 %s  sessions %d  errors %d  rcpt %s  CPU: server %.0f%% (%.0f µs/session)",
		*name, rate, ms(percentile(lat, 50)), ms(percentile(lat, 99)), len(lat), errs, strings.Join(cs, " "),
		100*server, 1e6*server/max(rate, 1))
	if *pid > 0 {
		fmt.Printf(", pid %d alone %.0f%%", *pid, 100*(cpu1-cpu0).Seconds()/secs)
	}
	fmt.Printf(", load tool %.0f%%\n", 100*load)
	if first != "" {
		fmt.Printf("%-20s first error: %s\n", *name, first)
	}
	// A machine-readable line for scripts that compute ratios.
	fmt.Printf("RESULT %s rate=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d server_cpu=%.3f us_per_session=%.1f\n",
		strings.ReplaceAll(*name, " ", "_"), rate, float64(percentile(lat, 50))/1e6, float64(percentile(lat, 99))/1e6, errs,
		server, 1e6*server/max(rate, 1))
	return nil
}

// greySession runs one session and returns the RCPT reply code.
func greySession(br *bufio.Reader, src netip.Addr, addr string, i int) (string, error) {
	c, err := dialFrom(src, addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br.Reset(c)
	step := func(cmd string, want ...string) (string, error) {
		if cmd != "" {
			if _, err := io.WriteString(c, cmd); err != nil {
				return "", err
			}
		}
		code, err := readReply(br)
		if err != nil {
			return "", fmt.Errorf("after %q: %w", strings.TrimSpace(cmd), err)
		}
		for _, w := range want {
			if code[0] == w[0] {
				return code, nil
			}
		}
		return code, fmt.Errorf("after %q: reply %s", strings.TrimSpace(cmd), code)
	}
	if _, err := step("", "2"); err != nil {
		return "", err
	}
	if _, err := step(fmt.Sprintf("EHLO h%d.bench.example\r\n", i), "2"); err != nil {
		return "", err
	}
	if _, err := step(fmt.Sprintf("MAIL FROM:<s%d@sender.bench.example>\r\n", i), "2"); err != nil {
		return "", err
	}
	code, err := step(fmt.Sprintf("RCPT TO:<r%d@rcpt.bench.example>\r\n", i%1000), "2", "4")
	if err != nil {
		return "", err
	}
	if _, err := step("QUIT\r\n", "2"); err != nil {
		return "", err
	}
	return code, nil
}

// readReply reads one SMTP reply, multi-line or not, and returns its code.
func readReply(br *bufio.Reader) (string, error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		if len(line) < 4 {
			return "", fmt.Errorf("short reply line %q", line)
		}
		if line[3] != '-' {
			return string(line[:3]), nil
		}
	}
}
