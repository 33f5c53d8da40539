package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// service is a moat binary run as a service is: as root that drops to its
// user, or started unprivileged with the socket systemd would pass.
type service struct {
	dir, cfg, log string
	cmd           *exec.Cmd
	done          chan struct{}
	dismiss       func()
}

// nobody is the unprivileged user the service tests run moat as.
func nobody(t *testing.T) (uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the service tests start moat as root, as an init system does: run them as root (CI does)")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// serviceDir is a directory other users may search, holding a copy of the
// binary they may run (BuildMoat's directory is private).
func serviceDir(t *testing.T) (dir, bin string) {
	t.Helper()
	dir = instanceDir(t, "service")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(BuildMoat(t))
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "moat")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// start runs cmd (moat run, or a shell that execs it) with its output in
// the service's log, and waits until something listens on addr.
func (s *service) start(t *testing.T, cmd *exec.Cmd, addr string) {
	t.Helper()
	logf, err := os.OpenFile(s.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()
	// A process that changes its credentials loses its parent-death
	// signal: the watchdog ends it if the test binary dies.
	s.dismiss = watchdog(t, cmd.Process.Pid, s.dir)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("moat log:\n%s", tail(s.Log(), 40))
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		s.dismiss()
	})
	if !waitListening(addr, 10*time.Second, s.done) {
		t.Fatalf("moat does not listen on %s; log:\n%s", addr, tail(s.Log(), 40))
	}
}

func (s *service) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// stop sends SIGTERM and wants a clean exit.
func (s *service) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatal("moat did not stop within 20s of SIGTERM")
	}
	if !s.cmd.ProcessState.Success() {
		t.Errorf("moat exited with %s after SIGTERM", s.cmd.ProcessState)
	}
}

// procStatus returns the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

func owner(t *testing.T, path string) int {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid)
}

// privilegedAddr is a free loopback address with a port below 1024.
func privilegedAddr(t *testing.T) string {
	t.Helper()
	for p := 700; p < 1000; p++ {
		addr := "127.0.0.1:" + strconv.Itoa(p)
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port below 1024 on 127.0.0.1")
	return ""
}

// With user = "nobody", moat started as root binds a port only root may,
// opens its store and admin socket, gives data_dir, the store and the
// socket to nobody, becomes nobody (every uid and gid, no capability),
// and still reads its configuration on a reload and stops cleanly.
func TestServiceDropsToUser(t *testing.T) {
	uid, gid := nobody(t)
	dir, bin := serviceDir(t)
	s := &service{dir: dir, cfg: filepath.Join(dir, "moat.toml"), log: filepath.Join(dir, "moat.log")}
	listen := privilegedAddr(t)
	data := filepath.Join(dir, "data")
	base := fmt.Sprintf("listen = %q\nhostname = \"mx.example.org\"\ndata_dir = %q\nbackend = %q\nuser = \"nobody\"\n[greylist]\ngreet_delay = \"1ms\"\n[reputation]\ndns_servers = [\"127.0.0.1:9\"]\n",
		listen, data, FreeAddr(t, "127.0.0.1"))
	if err := os.WriteFile(s.cfg, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start(t, exec.Command(bin, "run", "-c", s.cfg), listen)
	if b := banner(t, "127.0.0.1", listen); !strings.Contains(b, "mx.example.org") {
		t.Errorf("banner %q", b)
	}
	ps := procStatus(t, s.cmd.Process.Pid)
	want := fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid)
	if ps["Uid"] != want || ps["Gid"] != fmt.Sprintf("%d %d %d %d", gid, gid, gid, gid) || ps["CapEff"] != "0000000000000000" {
		t.Errorf("moat runs with Uid %q Gid %q CapEff %q, want nobody's ids (%s) and no capability", ps["Uid"], ps["Gid"], ps["CapEff"], want)
	}
	for _, p := range []string{data, filepath.Join(data, "moat.db"), filepath.Join(data, "moat.sock")} {
		if o := owner(t, p); o != uid {
			t.Errorf("%s belongs to uid %d, want nobody (%d)", p, o, uid)
		}
	}
	if err := os.WriteFile(s.cfg, []byte("whitelist = [\"192.0.2.0/24\"]\n"+base), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-c", s.cfg, "reload").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "applied whitelist") {
		t.Errorf("moat reload after the drop: %v\n%s", err, out)
	}
	s.stop(t)
	if _, err := os.Stat(filepath.Join(data, "moat.sock")); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind after the stop: %v", err)
	}
	// Started again as root, it opens the store it gave away.
	s.start(t, exec.Command(bin, "run", "-c", s.cfg), listen)
	s.stop(t)
}

// Under socket activation moat needs no privilege at all: started as
// nobody with the listening socket systemd would pass (LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES, descriptor 3), it serves on that socket and
// not on its configured address.
func TestServiceSocketActivation(t *testing.T) {
	uid, gid := nobody(t)
	dir, bin := serviceDir(t)
	s := &service{dir: dir, cfg: filepath.Join(dir, "moat.toml"), log: filepath.Join(dir, "moat.log")}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, uid, gid); err != nil { // systemd's StateDirectory=
		t.Fatal(err)
	}
	configured := FreeAddr(t, "127.0.0.1")
	text := fmt.Sprintf("listen = %q\nhostname = \"mx.example.org\"\ndata_dir = %q\nbackend = %q\nuser = \"nobody\"\n[log]\nformat = \"text\"\n[greylist]\ngreet_delay = \"1ms\"\n[reputation]\ndns_servers = [\"127.0.0.1:9\"]\n",
		configured, data, FreeAddr(t, "127.0.0.1"))
	if err := os.WriteFile(s.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	activated := ln.Addr().String()
	// $$ is the shell's pid, which exec keeps for moat: the pid systemd
	// names in LISTEN_PID.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=smtp exec "$0" run -c "$1"`, bin, s.cfg)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}
	s.start(t, cmd, activated)
	f.Close()
	ln.Close() // moat has its own copy
	if b := banner(t, "127.0.0.1", activated); !strings.Contains(b, "mx.example.org") {
		t.Errorf("banner on the passed socket: %q", b)
	}
	ps := procStatus(t, s.cmd.Process.Pid)
	if ps["Uid"] != fmt.Sprintf("%d %d %d %d", uid, uid, uid, uid) || ps["CapEff"] != "0000000000000000" {
		t.Errorf("moat runs with Uid %q CapEff %q, want nobody with no capability", ps["Uid"], ps["CapEff"])
	}
	if c, err := net.DialTimeout("tcp", configured, time.Second); err == nil {
		c.Close()
		t.Errorf("moat also listens on its configured %s; under socket activation it takes systemd's socket only", configured)
	}
	if !strings.Contains(s.Log(), "socket_activation=true") {
		t.Errorf("the start-up line does not say the socket came from systemd:\n%s", s.Log())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "-c", s.cfg, "status").CombinedOutput(); err != nil || !strings.Contains(string(out), "moat: running") {
		t.Errorf("moat status as root: %v\n%s", err, out)
	}
	s.stop(t)
}
