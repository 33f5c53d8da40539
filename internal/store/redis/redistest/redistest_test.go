package redistest

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

func ping(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// A started server answers, a stopped one does not, a restarted one
// answers on the same address.
func TestServerLifecycle(t *testing.T) {
	srv := Start(t)
	if got, err := ping(srv.Addr); err != nil || strings.TrimSpace(got) != "+PONG" {
		t.Fatalf("PING: %q, %v", got, err)
	}
	if !strings.HasPrefix(srv.URL(3), "redis://"+srv.Addr+"/3") {
		t.Errorf("URL(3) = %q", srv.URL(3))
	}
	srv.Stop(t)
	if _, err := ping(srv.Addr); err == nil {
		t.Error("a stopped server answers")
	}
	srv.Restart(t)
	if got, err := ping(srv.Addr); err != nil || strings.TrimSpace(got) != "+PONG" {
		t.Fatalf("PING after restart: %q, %v", got, err)
	}
}
