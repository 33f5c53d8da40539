package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef"

func TestServeTCPRequiresToken(t *testing.T) {
	f := newFixture(t)
	f.populate(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.svc.ServeTCP(ctx, ln, testToken) }()
	base := "http://" + ln.Addr().String()

	for _, tc := range []struct {
		name   string
		method string
		path   string
		auth   string
		want   int
	}{
		{"no token", "GET", "/v1/hosts", "", 401},
		{"wrong token", "GET", "/v1/hosts", "Bearer " + strings.Repeat("x", len(testToken)), 401},
		{"token prefix", "GET", "/v1/hosts", "Bearer " + testToken[:10], 401},
		{"token plus more", "GET", "/v1/hosts", "Bearer " + testToken + "x", 401},
		{"not bearer", "GET", "/v1/hosts", "Basic " + testToken, 401},
		{"bearer lower case", "GET", "/v1/hosts", "bearer " + testToken, 401},
		{"empty bearer", "GET", "/v1/hosts", "Bearer ", 401},
		{"write without token", "POST", "/v1/hosts", "", 401},
		{"unknown path without token", "GET", "/nothing", "", 401},
		{"right token", "GET", "/v1/hosts", "Bearer " + testToken, 200},
		{"right token, status", "GET", "/v1/status", "Bearer " + testToken, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.method == "POST" {
				body = strings.NewReader(`{"ip":"198.51.100.7","class":"white"}`)
			}
			req, err := http.NewRequest(tc.method, base+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s with %q: %s %s, want %d", tc.method, tc.path, tc.auth, resp.Status, b, tc.want)
			}
			if tc.want == 401 {
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
				if strings.Contains(string(b), "192.0.2") {
					t.Errorf("401 body gives data away: %s", b)
				}
			}
			if tc.want == 200 && tc.path == "/v1/hosts" && !strings.Contains(string(b), "192.0.2.9") {
				t.Errorf("hosts with the right token: %s", b)
			}
		})
	}
	// The refused write changed nothing.
	hs, err := f.svc.Hosts("")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.IP == "198.51.100.7" {
			t.Errorf("a POST without a token made %s %s", h.IP, h.Class)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeTCP after cancel: %v", err)
	}
}

func TestServeTCPRefusesEmptyToken(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := f.svc.ServeTCP(context.Background(), ln, ""); err == nil {
		t.Fatal("ServeTCP with an empty token served")
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  "+testToken+"  \nsecond line is ignored\n", 0o600)
	if tok, err := LoadToken(good); err != nil || tok != testToken {
		t.Errorf("LoadToken(good) = %q, %v; want the first line trimmed", tok, err)
	}
	if tok, err := LoadToken(write("group", testToken, 0o640)); err != nil || tok != testToken {
		t.Errorf("LoadToken(mode 0640) = %q, %v; want it accepted (group moat may share it)", tok, err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope"), "openssl rand"},
		{"world readable", write("world", testToken, 0o644), "chmod 600"},
		{"short", write("short", "secret\n", 0o600), "at least 32"},
		{"empty", write("empty", "", 0o600), "at least 32"},
	} {
		_, err := LoadToken(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "token_file") {
			t.Errorf("LoadToken(%s) error %v, want one naming token_file and saying %q", tc.name, err, tc.want)
		}
	}
}
