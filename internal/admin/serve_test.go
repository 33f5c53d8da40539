package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestHandlerMethods(t *testing.T) {
	h := newFixture(t).svc.Handler()
	for _, r := range []struct{ method, path string }{
		{"PUT", "/v1/hosts"},
		{"POST", "/v1/status"},
		{"GET", "/v1/nothing"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(r.method, r.path, nil))
		if rec.Code != http.StatusMethodNotAllowed && rec.Code != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404 or 405", r.method, r.path, rec.Code)
		}
	}
}

// socketPath returns a short socket path: unix socket paths are limited to
// about 100 bytes, and test temp directories can be long.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "moat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "sub", "moat.sock")
}

func TestListen(t *testing.T) {
	path := socketPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}

	// A second moat on the same path is refused while the first listens.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if ln2, err := Listen(path); err == nil {
		ln2.Close()
		t.Fatal("second Listen on a live socket succeeded")
	} else if !strings.Contains(err.Error(), "another moat") || !strings.Contains(err.Error(), path) {
		t.Errorf("second Listen: %v, want one naming the socket and saying another moat runs", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := socketPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed daemon leaves its socket file behind.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln, err = Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
}

// serveSocket serves svc on a fresh socket and returns a client for it,
// and stop, which ends Serve (at the latest when the test ends) and
// returns what Serve returned.
func serveSocket(t *testing.T, svc *Service) (*Client, func() error) {
	t.Helper()
	path := socketPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, ln) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return NewClient(path), stop
}

func TestServeOverSocket(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	c, stop := serveSocket(t, f.svc)
	var hs []HostView
	if err := c.Do("GET", "/v1/hosts?class=white", nil, &hs); err != nil {
		t.Fatal(err)
	}
	if got := ips(hs); !reflect.DeepEqual(got, []string{"192.0.2.9", "2001:db8::1"}) {
		t.Errorf("hosts over the socket: %v", got)
	}
	if err := c.Do("POST", "/v1/hosts", map[string]string{"ip": "192.0.2.9", "class": "purple"}, nil); err == nil || !strings.Contains(err.Error(), "purple") {
		t.Errorf("bad request over the socket: %v, want the server's error", err)
	}
	if err := stop(); err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	if err := c.Do("GET", "/v1/status", nil, nil); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("client with no daemon: %v, want ErrNoDaemon", err)
	}
}
