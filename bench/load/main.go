// Command load is moat's load tool. It plays many SMTP client hosts at once,
// each from its own source address in 127.0.0.0/8, and measures what the
// server under test does for them. It is a separate process from the
// server on purpose: each process may hold at most ~19,900 descriptors, and
// the tarpit benchmark needs 19,000 on both sides.
//
// Subcommands (each prints one summary, as text):
//
//	load tarpit  hold N black connections, measure moat's RSS and CPU and
//	             the gaps between stuttered bytes; then show the reserve
//	load grey    sessions/s of EHLO/MAIL/RCPT/QUIT from distinct hosts
//	load banner  time to banner through two addresses, alternating
//	load fill    write N greylist triplets into a fresh bolt store
//	load startup time until a freshly started process accepts, and its RSS
//	load proxy   the smallest Go TCP proxy: the floor for the white path
//	load cost    one patient bot's single-message session in the tarpit:
//	             what it costs the bot, on a real socket
//
// load only ever talks to loopback addresses: it refuses anything else, so
// a typo cannot turn a benchmark into a flood of someone else's server.
//
// The load tool must not be the bottleneck of what it measures: it keeps no
// goroutine and no buffer for a held connection it does not sample, reads
// only a sample of connections, and reports its own CPU time next to the
// server's.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	cmds := map[string]func([]string) error{
		"tarpit":  tarpitCmd,
		"grey":    greyCmd,
		"banner":  bannerCmd,
		"fill":    fillCmd,
		"startup": startupCmd,
		"proxy":   proxyCmd,
		"cost":    costCmd,
	}
	if len(os.Args) < 2 || cmds[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: load tarpit|grey|banner|fill|startup|proxy|cost [flags] (load CMD -h for the flags)")
		os.Exit(2)
	}
	if err := cmds[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "load "+os.Args[1]+": "+err.Error())
		os.Exit(1)
	}
}

func newFlags(name string) *flag.FlagSet {
	return flag.NewFlagSet("load "+name, flag.ExitOnError)
}

// sources hands out client addresses from a loopback prefix: the i-th host
// of the prefix, skipping addresses ending in .0 and .255 so that no
// address looks like a network or broadcast address to anything.
type sources struct {
	base uint32
	size uint32 // usable addresses
}

func parseSources(cidr string) (sources, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return sources{}, fmt.Errorf("source prefix %q: %w", cidr, err)
	}
	p = p.Masked()
	if !p.Addr().Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(p.Addr()) || p.Bits() < 8 {
		return sources{}, fmt.Errorf("source prefix %q: must be inside 127.0.0.0/8 (loopback only)", cidr)
	}
	a := p.Addr().As4()
	span := uint64(1) << (32 - p.Bits())
	s := sources{base: uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])}
	// Count the usable addresses: every /24 loses .0 and .255.
	for off := uint64(0); off < span; off++ {
		if b := byte(s.base + uint32(off)); b != 0 && b != 255 {
			s.size++
		}
	}
	if s.size == 0 {
		return sources{}, fmt.Errorf("source prefix %q: no usable address", cidr)
	}
	return s, nil
}

// addr returns the i-th usable address, wrapping around.
func (s sources) addr(i int) netip.Addr {
	n := uint32(i) % s.size
	// Skip two addresses of every 256 by walking /24 by /24: 254 usable
	// per /24 once the first /24 of the prefix is aligned, which it is
	// for every prefix of /24 or shorter. Longer prefixes fall through
	// to the slow path below.
	var v uint32
	if s.base&0xff == 0 && s.size >= 254 {
		v = s.base + (n/254)<<8 + 1 + n%254
	} else {
		for off := uint32(0); ; off++ {
			if b := byte(s.base + off); b != 0 && b != 255 {
				if n == 0 {
					v = s.base + off
					break
				}
				n--
			}
		}
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// checkLoopback refuses a target that is not on loopback.
func checkLoopback(hostport string) error {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return fmt.Errorf("address %q: want IP:port on loopback: %w", hostport, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("address %q: not a loopback address; load only talks to loopback", hostport)
	}
	return nil
}

// dialFrom connects to addr from src.
func dialFrom(src netip.Addr, addr string, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// percentile returns the p-th percentile (0..100) of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1)*p/100 + 0.5)
	return sorted[min(i, len(sorted)-1)]
}

// summary formats p50/p99/max of ds (sorted in place).
func summary(ds []time.Duration) string {
	slices.Sort(ds)
	if len(ds) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p99 %s  max %s  (n=%d)", ms(percentile(ds, 50)), ms(percentile(ds, 99)), ms(ds[len(ds)-1]), len(ds))
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) + "ms" }

// procStatus reads a field of /proc/PID/status in kB (VmRSS, VmHWM).
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTick = 100

// procCPU returns the user+system CPU time of pid (0: this process).
func procCPU(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields count
	// from the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: too few fields", path)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14 of the man page
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: bad utime/stime", path)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// machineBusy returns the CPU time all cores spent not idle, from the
// first line of /proc/stat (user nice system idle iowait irq softirq
// steal ...).
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: unexpected first line")
	}
	var busy int64
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTick, nil
}
