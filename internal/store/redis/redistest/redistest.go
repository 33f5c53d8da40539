// Package redistest runs a real redis-server for tests: on a free loopback
// port, in a temporary directory, with persistence off, killed by its PID
// when the test ends. A machine without redis-server fails the test with
// the Debian package to install; it never skips.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a real redis-server run by a test. Nothing survives Stop.
type Server struct {
	Addr string
	dir  string
	args []string // before the common ones: a config file, --sentinel, --replicaof…
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server and stops it when the test ends.
func Start(t testing.TB) *Server { return start(t, nil) }

// start starts redis-server with args(srv) before the common ones; a file
// of the server's own goes in srv.dir.
func start(t testing.TB, args func(srv *Server) []string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: install the Debian package redis-server (test/run.sh does)")
	}
	srv := &Server{dir: t.TempDir()}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Addr = l.Addr().String()
	l.Close()
	if args != nil {
		srv.args = args(srv)
	}
	srv.Restart(t)
	t.Cleanup(func() { srv.Stop(t) })
	return srv
}

// Port is the server's port.
func (srv *Server) Port() string {
	_, port, _ := net.SplitHostPort(srv.Addr)
	return port
}

// URL is the server's redis:// URL for database db.
func (srv *Server) URL(db int) string { return fmt.Sprintf("redis://%s/%d", srv.Addr, db) }

// Restart runs redis-server again on the same address after Stop, empty,
// and waits until it answers.
func (srv *Server) Restart(t testing.TB) {
	t.Helper()
	args := append(append([]string{}, srv.args...), "--port", srv.Port(), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", srv.dir, "--logfile", srv.dir+"/redis.log", "--daemonize", "no")
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	srv.cmd = cmd
	srv.done = make(chan struct{})
	go func() { cmd.Wait(); close(srv.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", srv.Addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			fmt.Fprint(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return
			}
		}
		select {
		case <-srv.done:
			log, _ := os.ReadFile(srv.dir + "/redis.log")
			t.Fatalf("redis-server exited at start-up: %s\n%s", cmd.ProcessState, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server does not answer on %s after 10s", srv.Addr)
		}
	}
}

// Pause stops the server's process (SIGSTOP) until Resume: it holds its
// connections but answers nothing, as a hung machine would.
func (srv *Server) Pause(t testing.TB) {
	t.Helper()
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// Resume undoes Pause.
func (srv *Server) Resume(t testing.TB) {
	t.Helper()
	if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// Stop kills redis-server by its PID and waits for it to be gone.
func (srv *Server) Stop(t testing.TB) {
	if srv.cmd == nil {
		return
	}
	srv.cmd.Process.Kill()
	<-srv.done
	srv.cmd = nil
}
