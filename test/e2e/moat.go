package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// moatBinary is the moat binary, built once per test run.
var moatBinary struct {
	once sync.Once
	dir  string // holds the binary; removed by RemoveBuild
	path string
	err  error
}

// BuildMoat builds ./cmd/moat of the module these tests belong to, once
// per test run, and returns the binary's path. It fails the test with the
// compiler's output if the build fails.
func BuildMoat(t testing.TB) string {
	t.Helper()
	moatBinary.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			moatBinary.err = fmt.Errorf("go tool not found in PATH: %v", err)
			return
		}
		out, err := exec.Command(goTool, "env", "GOMOD").Output()
		gomod := strings.TrimSpace(string(out))
		if err != nil || gomod == "" || gomod == os.DevNull {
			moatBinary.err = fmt.Errorf("go env GOMOD: cannot find the module root (%v)", err)
			return
		}
		dir, err := os.MkdirTemp("", "moat-e2e-bin-")
		if err != nil {
			moatBinary.err = err
			return
		}
		moatBinary.dir = dir
		bin := filepath.Join(dir, "moat")
		cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/moat")
		cmd.Dir = filepath.Dir(gomod)
		if out, err := cmd.CombinedOutput(); err != nil {
			moatBinary.err = fmt.Errorf("go build ./cmd/moat: %v\n%s", err, out)
			return
		}
		moatBinary.path = bin
	})
	if moatBinary.err != nil {
		t.Fatal(moatBinary.err)
	}
	return moatBinary.path
}

// RemoveBuild removes the binary BuildMoat made. TestMain calls it.
func RemoveBuild() {
	if moatBinary.dir != "" {
		os.RemoveAll(moatBinary.dir)
	}
}

// Moat is one running moat, started by StartMoat.
type Moat struct {
	Addr    string // listen address (127.0.0.1:port)
	Dir     string // holds the config, the data dir and the log
	DataDir string
	Config  string // path of the config file
	LogFile string // moat's stdout and stderr, across restarts
	Cmd     *exec.Cmd

	bin     string
	done    chan struct{} // closed when Cmd has exited
	dismiss func()        // tells this run's watchdog all is well
}

// StartMoat writes configTOML to a file and runs "moat run -c FILE". In the
// text, {{listen}} becomes a free address on 127.0.0.1 and {{data_dir}} a
// fresh directory; vars are more pairs of placeholder and value (for
// example "{{backend}}", b.Addr). It returns once moat listens, and fails
// the test with moat's log if that takes more than 10s or moat exits.
func StartMoat(t testing.TB, configTOML string, vars ...string) *Moat {
	t.Helper()
	bin := BuildMoat(t)
	if len(vars)%2 != 0 {
		t.Fatalf("StartMoat: vars must be placeholder/value pairs, got %q", vars)
	}
	dir := instanceDir(t, "moat")
	m := &Moat{
		Addr:    FreeAddr(t, "127.0.0.1"),
		Dir:     dir,
		DataDir: filepath.Join(dir, "data"),
		Config:  filepath.Join(dir, "moat.toml"),
		LogFile: filepath.Join(dir, "moat.log"),
		bin:     bin,
	}
	if err := os.Mkdir(m.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pairs := append([]string{"{{listen}}", m.Addr, "{{data_dir}}", m.DataDir}, vars...)
	config := strings.NewReplacer(pairs...).Replace(configTOML)
	// Tests never ask a real name server: unless a test sets up its own
	// [reputation] table, moat's DNS goes to a closed loopback port.
	if !strings.Contains(config, "[reputation]") {
		config += "\n[reputation]\ndns_servers = [\"127.0.0.1:9\"]\n"
	} else if !strings.Contains(config, "dns_servers") {
		config = strings.Replace(config, "[reputation]\n", "[reputation]\ndns_servers = [\"127.0.0.1:9\"]\n", 1)
	}
	if i := strings.Index(config, "{{"); i >= 0 {
		t.Fatalf("StartMoat: placeholder left in config: %q", config[i:min(len(config), i+20)])
	}
	if err := os.WriteFile(m.Config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("moat log (last 60 lines):\n%s", tail(m.Log(), 60))
		}
		if m.running() {
			m.Kill(t)
		}
		if m.dismiss != nil {
			m.dismiss()
		}
	})
	m.start(t)
	return m
}

func (m *Moat) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(m.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(m.bin, "run", "-c", m.Config)
	cmd.Dir = m.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Moat dies with the test binary: by the parent-death signal, or the
	// watchdog if moat changes its credentials (which clears the signal).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start moat: %v", err)
	}
	m.Cmd = cmd
	done := make(chan struct{})
	m.done = done
	go func() {
		cmd.Wait()
		close(done)
	}()
	m.dismiss = watchdog(t, cmd.Process.Pid, m.Dir)
	if !waitListening(m.Addr, 10*time.Second, done) {
		if m.running() {
			m.Kill(t)
			t.Fatalf("moat does not listen on %s after 10s; log:\n%s", m.Addr, tail(m.Log(), 60))
		}
		m.dismiss()
		t.Fatalf("moat exited at start-up (%s); log:\n%s", cmd.ProcessState, tail(m.Log(), 60))
	}
}

func (m *Moat) running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for moat to exit. A moat that takes more
// than 10s, or exits with an error, fails the test.
func (m *Moat) Stop(t testing.TB) {
	t.Helper()
	if !m.running() {
		t.Fatalf("moat stop: moat is not running (%s)", m.Cmd.ProcessState)
	}
	m.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.Kill(t)
		t.Fatalf("moat did not exit within 10s of SIGTERM")
	}
	syscall.Kill(-m.Cmd.Process.Pid, syscall.SIGKILL)
	m.dismiss()
	if !m.Cmd.ProcessState.Success() {
		t.Errorf("moat exited with %s after SIGTERM; want a clean exit", m.Cmd.ProcessState)
	}
}

// Kill sends SIGKILL and waits for moat to be gone.
func (m *Moat) Kill(t testing.TB) {
	t.Helper()
	m.Cmd.Process.Kill()
	<-m.done
	syscall.Kill(-m.Cmd.Process.Pid, syscall.SIGKILL)
	m.dismiss()
}

// Restart stops moat and starts it again with the same config and data dir.
func (m *Moat) Restart(t testing.TB) {
	t.Helper()
	m.Stop(t)
	m.start(t)
}

// Start starts moat again, with the same config and data dir, after Stop
// or Kill.
func (m *Moat) Start(t testing.TB) {
	t.Helper()
	if m.running() {
		t.Fatal("moat start: moat is already running")
	}
	m.start(t)
}

// Log returns what moat wrote to stdout and stderr so far.
func (m *Moat) Log() string {
	b, _ := os.ReadFile(m.LogFile)
	return string(b)
}

// LogRecords returns moat's log lines that are JSON objects (slog's
// JSONHandler output), decoded.
func (m *Moat) LogRecords() []map[string]any {
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(m.Log()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs
}

// CLI runs "moat -c CONFIG args..." and returns its stdout. A non-zero exit
// fails the test with stderr.
func (m *Moat) CLI(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.bin, append([]string{"-c", m.Config}, args...)...)
	cmd.Dir = m.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("moat %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String()
}

// Hosts runs "moat hosts list --json" with args added (e.g. "--class",
// "white") and returns the class of every listed address or network, keyed
// by address ("127.0.0.20") or, for networks, prefix ("10.0.0.0/8").
func (m *Moat) Hosts(t testing.TB, args ...string) map[string]string {
	t.Helper()
	out := m.CLI(t, append([]string{"hosts", "list", "--json"}, args...)...)
	hosts, err := ParseHosts([]byte(out))
	if err != nil {
		t.Fatalf("moat hosts list --json: %v\noutput:\n%s", err, out)
	}
	return hosts
}

// ParseHosts reads the output of "moat hosts list --json": a JSON array of
// host objects, an object holding such an array, or one object per line.
// A host object names its address in a field called prefix, ip, addr,
// address, host or net, and its class in a field called class (any case).
// Single-address prefixes (/32, /128) are keyed by the bare address.
func ParseHosts(data []byte) (map[string]string, error) {
	var objs []map[string]any
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0, string(data) == "null":
	case data[0] == '[':
		if err := json.Unmarshal(data, &objs); err != nil {
			return nil, err
		}
	default:
		dec := json.NewDecoder(bytes.NewReader(data))
		for dec.More() {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				return nil, err
			}
			if obj == nil {
				continue
			}
			if list, ok := hostList(obj); ok {
				objs = append(objs, list...)
			} else {
				objs = append(objs, obj)
			}
		}
	}
	hosts := make(map[string]string)
	for _, obj := range objs {
		addr, class := "", ""
		for k, v := range obj {
			s, ok := v.(string)
			switch strings.ToLower(k) {
			case "prefix", "ip", "addr", "address", "host", "net":
				if ok {
					addr = s
				}
			case "class":
				if ok {
					class = strings.ToLower(s)
				} else if n, isNum := v.(float64); isNum {
					// The store's Class numbering: grey 0, white 1, black 2.
					class = map[float64]string{0: "grey", 1: "white", 2: "black"}[n]
				}
			}
		}
		if addr == "" || class == "" {
			return nil, fmt.Errorf("host entry without address or class: %v", obj)
		}
		addr = strings.TrimSuffix(strings.TrimSuffix(addr, "/32"), "/128")
		hosts[addr] = class
	}
	return hosts, nil
}

// hostList finds the array of hosts in a wrapping object like
// {"hosts": [...]}.
func hostList(obj map[string]any) ([]map[string]any, bool) {
	for k, v := range obj {
		if !strings.EqualFold(k, "hosts") {
			continue
		}
		arr, ok := v.([]any)
		if !ok {
			return nil, false
		}
		list := []map[string]any{}
		for _, e := range arr {
			o, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			list = append(list, o)
		}
		return list, true
	}
	return nil, false
}
