package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Domain is the one domain a Backend accepts mail for.
const Domain = "example.test"

// masterLifetime bounds how long a master process may live even if
// everything else fails (the test binary dies in a way that neither the
// cleanup nor the parent-death signal catches). It is longer than go
// test's default timeout, so it never ends a test that is still running.
const masterLifetime = 15 * time.Minute

// installHint is how to get what these tests need.
const installHint = "run apt-get install postfix swaks (see .ci/run)"

// Postfix is one running Postfix instance, isolated in Dir.
type Postfix struct {
	Dir     string // instance root: etc/, spool/, data/, mail/, maillog
	Config  string // config_directory (Dir/etc)
	Queue   string // queue_directory (Dir/spool)
	Maillog string // maillog_file

	name    string // "backend" or "sender", for messages
	master  *exec.Cmd
	done    chan struct{} // closed when master has exited
	dismiss func()        // tells the watchdog all is well
}

// tools holds the absolute paths of the Postfix programs, found once.
var tools struct {
	once     sync.Once
	err      error
	postfix  string
	postconf string
	sendmail string
	postq    string
	master   string // daemon_directory/master
}

// requirePostfix fails the test, saying how to fix it, unless Postfix is
// installed and the test runs as root.
func requirePostfix(t testing.TB) {
	t.Helper()
	tools.once.Do(func() {
		find := func(name string) string {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
			// A non-login PATH often lacks the sbin directories.
			for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
				p := filepath.Join(dir, name)
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					return p
				}
			}
			return ""
		}
		tools.postfix = find("postfix")
		tools.postconf = find("postconf")
		tools.sendmail = find("sendmail")
		tools.postq = find("postqueue")
		if tools.postfix == "" || tools.postconf == "" || tools.sendmail == "" || tools.postq == "" {
			tools.err = fmt.Errorf("postfix not installed: %s", installHint)
			return
		}
		out, err := exec.Command(tools.postconf, "-d", "-h", "daemon_directory").Output()
		if err != nil {
			tools.err = fmt.Errorf("postconf -d daemon_directory: %v (is postfix installed? %s)", err, installHint)
			return
		}
		tools.master = filepath.Join(strings.TrimSpace(string(out)), "master")
		if _, err := os.Stat(tools.master); err != nil {
			tools.err = fmt.Errorf("postfix master daemon not found: %v (%s)", err, installHint)
		}
	})
	if tools.err != nil {
		t.Fatal(tools.err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("e2e tests start Postfix master processes and need root (CI runs them as root)")
	}
}

// instanceDir makes a fresh directory for one instance and registers its
// removal. It is short (unix socket paths under it must stay below 108
// bytes) and every directory above it must be searchable by the postfix
// and nobody users.
func instanceDir(t testing.TB, prefix string) string {
	t.Helper()
	for d := filepath.Clean(os.TempDir()); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatalf("temporary directory: %v", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			t.Fatalf("%s is not searchable by other users, so Postfix's unprivileged daemons cannot reach the instance directories below it: set TMPDIR to a directory like /tmp", d)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	dir, err := os.MkdirTemp("", "moat-e2e-"+prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// lookupIDs returns the uid and gid of a system user and group.
func lookupIDs(t testing.TB, userName, groupName string) (int, int) {
	t.Helper()
	u, err := user.Lookup(userName)
	if err != nil {
		t.Fatalf("user %s: %v (%s)", userName, err, installHint)
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		t.Fatalf("group %s: %v", groupName, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	return uid, gid
}

// masterCF lists the services every instance runs. Nothing is chrooted, so
// the instance needs no copies of system files. The smtpd line is added by
// the backend only.
const masterCF = `# service type  private unpriv  chroot  wakeup  maxproc command
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// commonMainCF is the part of main.cf shared by all instances: no DNS, no
// aliases, no local delivery, logging to a file in the instance.
func commonMainCF(dir, hostname, inet string) string {
	return fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
myhostname = %[2]s
mydomain = %[2]s
myorigin = %[2]s
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = %[3]s
inet_protocols = ipv4
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
biff = no
`, dir, hostname, inet)
}

// startPostfix lays out an instance in dir with the given main.cf, master.cf
// and extra files in its config directory (lookup tables), and starts its
// master as a child of the test binary.
func startPostfix(t testing.TB, name, dir, mainCF, masterCF string, extra map[string]string) *Postfix {
	t.Helper()
	p := &Postfix{
		Dir:     dir,
		Config:  filepath.Join(dir, "etc"),
		Queue:   filepath.Join(dir, "spool"),
		Maillog: filepath.Join(dir, "maillog"),
		name:    name,
		done:    make(chan struct{}),
	}
	pfUID, pfGID := lookupIDs(t, "postfix", "postfix")
	for _, d := range []string{p.Config, p.Queue, filepath.Join(dir, "data")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Postfix wants a root-owned config and queue directory and a data
	// directory of its own.
	if err := os.Chown(filepath.Join(dir, "data"), pfUID, pfGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(p.Config, "main.cf"), mainCF)
	writeFile(t, filepath.Join(p.Config, "master.cf"), masterCF)
	for name, content := range extra {
		writeFile(t, filepath.Join(p.Config, name), content)
	}

	makeQueue(t, p.Queue, pfUID)

	// The master runs in the foreground (-d) as a child of the test, in a
	// process group of its own that the test ends at cleanup, a watchdog
	// ends if the test binary dies, and -e ends in any case. (A
	// parent-death signal would not do: the kernel clears it when the
	// master changes its credentials.)
	cmd := exec.Command(tools.master, "-c", p.Config, "-d", "-e", strconv.Itoa(int(masterLifetime/time.Second)))
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start postfix master: %v", name, err)
	}
	p.master = cmd
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	p.dismiss = watchdog(t, cmd.Process.Pid, dir)
	t.Cleanup(func() { p.stop(t) })

	// Logging works once the master's own start line arrives; by then it
	// has created every socket and bound every listener.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Log(), "daemon started") {
		select {
		case <-p.done:
			t.Fatalf("%s: postfix master exited at start-up: %s\n%s\nmaillog:\n%s", name, cmd.ProcessState, stderr.Bytes(), p.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: postfix master did not log its start within 10s\nmaillog:\n%s", name, p.Log())
		}
	}
	return p
}

// makeQueue creates the queue subdirectories with the owners and modes
// Postfix insists on, as "postfix check" would, but without its dozens of
// helper processes (seconds on a small machine).
func makeQueue(t testing.TB, queue string, pfUID int) {
	t.Helper()
	_, postdrop := lookupIDs(t, "postfix", "postdrop")
	for _, q := range []struct {
		name string
		uid  int
		gid  int
		mode os.FileMode
	}{
		{"active", pfUID, 0, 0o700},
		{"bounce", pfUID, 0, 0o700},
		{"corrupt", pfUID, 0, 0o700},
		{"defer", pfUID, 0, 0o700},
		{"deferred", pfUID, 0, 0o700},
		{"flush", pfUID, 0, 0o700},
		{"hold", pfUID, 0, 0o700},
		{"incoming", pfUID, 0, 0o700},
		{"private", pfUID, 0, 0o700},
		{"saved", pfUID, 0, 0o700},
		{"trace", pfUID, 0, 0o700},
		// postdrop (set-group-ID postdrop) drops submissions here and
		// pokes pickup through public/.
		{"maildrop", pfUID, postdrop, 0o730},
		{"public", pfUID, postdrop, 0o710},
		{"pid", 0, 0, 0o755},
	} {
		d := filepath.Join(queue, q.name)
		if err := os.Mkdir(d, q.mode); err != nil {
			t.Fatal(err)
		}
		// Mkdir's mode is filtered by the umask; Chmod's is not.
		if err := os.Chmod(d, q.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, q.uid, q.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// stop ends the master and everything it started. On failure it logs the
// tail of the maillog first, as that is where the reason usually is.
func (p *Postfix) stop(t testing.TB) {
	if t.Failed() {
		t.Logf("%s maillog (last 40 lines):\n%s", p.name, tail(p.Log(), 40))
	}
	select {
	case <-p.done:
	default:
		// SIGTERM is what "postfix stop" sends: the master terminates
		// its process group and exits.
		p.master.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: postfix master ignored SIGTERM for 10s; killing it", p.name)
			p.master.Process.Kill()
			<-p.done
		}
	}
	// Whatever is left of the group (a daemon that missed the signal)
	// goes now; ESRCH means there was nothing.
	syscall.Kill(-p.master.Process.Pid, syscall.SIGKILL)
	p.dismiss()
}

// watchdogScript waits for a line on stdin. "done" means the test cleaned
// up by itself. Anything else, end of file above all, means the test
// binary is gone without cleaning up (killed, or timed out): then the
// script ends process group $1, SIGTERM first, and removes directory $2.
const watchdogScript = `read line
[ "$line" = done ] && exit 0
kill -s TERM -- "-$1" 2>/dev/null
i=0
while kill -0 -- "-$1" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done
kill -s KILL -- "-$1" 2>/dev/null
rm -rf -- "$2"
`

// watchdog starts a process that outlives the test binary only to end the
// process group pgid and remove dir if the binary dies without cleaning
// up. It learns of the death from its stdin: the write end of the pipe is
// held by the test binary alone, and the kernel closes it however the
// binary ends. The returned func dismisses the watchdog.
func watchdog(t testing.TB, pgid int, dir string) func() {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "watchdog", strconv.Itoa(pgid), dir)
	cmd.Stdin = r
	// Its own group, so a ^C to go test does not kill it with the rest.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		t.Fatalf("start watchdog: %v", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			w.Write([]byte("done\n"))
			w.Close()
			cmd.Wait()
		})
	}
}

// Log returns the content of the instance's maillog.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(p.Maillog)
	return string(b)
}

// WaitLog polls the maillog until a line matches pattern (a regular
// expression) and returns that line. It fails the test with the maillog's
// tail on timeout.
func (p *Postfix) WaitLog(t testing.TB, pattern string, timeout time.Duration) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(p.Log(), "\n") {
			if re.MatchString(line) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no maillog line matching %q within %v; maillog tail:\n%s", p.name, pattern, timeout, tail(p.Log(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CountLog returns how many maillog lines match pattern.
func (p *Postfix) CountLog(pattern string) int {
	re := regexp.MustCompile(pattern)
	n := 0
	for _, line := range strings.Split(p.Log(), "\n") {
		if re.MatchString(line) {
			n++
		}
	}
	return n
}

var (
	connectRE    = regexp.MustCompile(`postfix/smtpd\[(\d+)\]: connect from [^\s\[]*\[([^\]]+)\]$`)
	disconnectRE = regexp.MustCompile(`postfix/smtpd\[(\d+)\]: disconnect from [^\s\[]*\[([^\]]+)\]( .*)?$`)
)

// moatProbe is how moat's reading of the backend's EHLO (at its start and
// every ten minutes) ends in smtpd's log: moat presents itself as
// 127.0.0.1, says EHLO and QUIT, nothing else.
const moatProbe = " ehlo=1 quit=1 commands=2"

// ClientAddrs returns the client address of every SMTP connection the
// instance's smtpd logged, in order, but moat's own EHLO probes. Behind a
// PROXY header this is the address from the header, which is what moat's
// backend must see.
func (p *Postfix) ClientAddrs() []string {
	var addrs []string
	open := map[string]int{} // smtpd pid → index of its connection in addrs
	probe := map[int]bool{}
	for _, line := range strings.Split(p.Log(), "\n") {
		if m := connectRE.FindStringSubmatch(line); m != nil {
			open[m[1]] = len(addrs)
			addrs = append(addrs, m[2])
		} else if m := disconnectRE.FindStringSubmatch(line); m != nil {
			if i, ok := open[m[1]]; ok && m[2] == "127.0.0.1" && m[3] == moatProbe {
				probe[i] = true
			}
			delete(open, m[1])
		}
	}
	var clients []string
	for i, a := range addrs {
		if !probe[i] {
			clients = append(clients, a)
		}
	}
	return clients
}

// Set changes main.cf parameters ("name = value" each) and makes the
// running instance reload them.
func (p *Postfix) Set(t testing.TB, params ...string) {
	t.Helper()
	args := append([]string{"-c", p.Config, "-e"}, params...)
	if out, err := exec.Command(tools.postconf, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: postconf -e %q: %v\n%s", p.name, params, err, out)
	}
	// SIGHUP is what "postfix reload" sends.
	if err := p.master.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("%s: reload: %v", p.name, err)
	}
}

// FreeAddr returns host:port with a TCP port that was free on ip a moment
// ago.
func FreeAddr(t testing.TB, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("free port on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitListening polls the kernel's socket tables until something listens on
// addr's port. It never connects: a probe connection would show up in the
// logs the tests assert on. It gives up early when done is closed.
func waitListening(addr string, timeout time.Duration, done <-chan struct{}) bool {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return false
	}
	deadline := time.Now().Add(timeout)
	for {
		if listening(port) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-done:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// listening reports whether /proc/net/tcp or tcp6 has a socket in state
// LISTEN on port.
func listening(port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			// sl local_address rem_address st ...; 0A is LISTEN.
			if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == "0A" {
				return true
			}
		}
	}
	return false
}

// writeFile writes a config file dated a minute ago: Postfix does not load
// a file modified within the last second or two (it may still be being
// edited) and polls until it is older, which costs seconds per instance.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
