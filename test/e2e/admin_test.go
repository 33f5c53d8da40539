package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Another local user cannot use the admin socket: "moat status" and "moat
// hosts white" run as nobody are refused by the socket's file mode alone
// (the test opens the data dir and the config to everyone, so nothing else
// stands in the way), and change nothing.
func TestAdminSocketNotForOthers(t *testing.T) {
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(""), "{{backend}}", b.Addr)
	socket := filepath.Join(m.DataDir, "moat.sock")
	st, err := os.Stat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: mode %v, want a socket with mode 0600", socket, st.Mode())
	}
	for _, p := range []string{m.Dir, m.DataDir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(m.Config, 0o644); err != nil {
		t.Fatal(err)
	}
	// The binary's own directory is private; nobody gets a copy.
	bin := filepath.Join(instanceDir(t, "nobody"), "moat")
	data, err := os.ReadFile(m.bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", "nobody", "--", bin, "-c", m.Config}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// First prove that nobody can run the binary and read the config: a
	// command that needs no socket works.
	if out, err := asNobody("version"); err != nil {
		t.Fatalf("moat version as nobody: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"status"}, {"hosts", "white", "127.0.0.99"}, {"hosts", "list"}} {
		out, err := asNobody(args...)
		if err == nil {
			t.Errorf("moat %s as nobody succeeded:\n%s", strings.Join(args, " "), out)
			continue
		}
		if !strings.Contains(out, "permission denied") {
			t.Errorf("moat %s as nobody: %v, want permission denied:\n%s", strings.Join(args, " "), err, out)
		}
	}
	if class, ok := m.Hosts(t)["127.0.0.99"]; ok {
		t.Errorf("nobody's refused command made 127.0.0.99 %s", class)
	}
	// Root, the owner, is served.
	if out := m.CLI(t, "status"); !strings.Contains(out, "running") {
		t.Errorf("moat status as the owner:\n%s", out)
	}
}

// The TCP admin listener serves only requests with the token, and moat
// does not start with a listener but no usable token.
func TestAdminTCPToken(t *testing.T) {
	const token = "e2e-token-0123456789abcdef0123456789abcdef"
	dir := instanceDir(t, "token")
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := StartBackend(t, true, alice)
	adminAddr := FreeAddr(t, "127.0.0.1")
	m := StartMoat(t, moatConfig(`
[admin]
listen = "{{admin}}"
token_file = "{{token}}"
`), "{{backend}}", b.Addr, "{{admin}}", adminAddr, "{{token}}", tokenFile)
	if !waitListening(adminAddr, 10*time.Second, m.done) {
		t.Fatalf("admin listener not up on %s", adminAddr)
	}

	do := func(method, path, auth, body string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, "http://"+adminAddr+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	for _, tc := range []struct {
		name, auth string
	}{
		{"no token", ""},
		{"wrong token", "Bearer " + strings.Repeat("0", len(token))},
		{"token as basic auth", "Basic " + token},
	} {
		if code, out := do("GET", "/v1/status", tc.auth, ""); code != 401 {
			t.Errorf("%s: GET /v1/status: %d %s, want 401", tc.name, code, out)
		}
		if code, out := do("POST", "/v1/hosts", tc.auth, `{"ip":"127.0.0.98","class":"white"}`); code != 401 {
			t.Errorf("%s: POST /v1/hosts: %d %s, want 401", tc.name, code, out)
		}
	}
	if class, ok := m.Hosts(t)["127.0.0.98"]; ok {
		t.Errorf("a request without the token made 127.0.0.98 %s", class)
	}
	if code, out := do("GET", "/v1/status", "Bearer "+token, ""); code != 200 || !strings.Contains(out, `"running":true`) {
		t.Errorf("right token: GET /v1/status: %d %s, want 200 and a running daemon", code, out)
	}
	if code, out := do("POST", "/v1/hosts", "Bearer "+token, `{"ip":"127.0.0.97","class":"black"}`); code != 200 {
		t.Errorf("right token: POST /v1/hosts: %d %s, want 200", code, out)
	}
	if class := m.Hosts(t)["127.0.0.97"]; class != "black" {
		t.Errorf("after a POST with the token 127.0.0.97 is %q, want black", class)
	}

	// Start-up refuses a listener without a token file, with a token file
	// others can read, and with a token too short to be a secret.
	shared := filepath.Join(dir, "shared.token")
	os.WriteFile(shared, []byte(token), 0o644)
	os.Chmod(shared, 0o644)
	short := filepath.Join(dir, "short.token")
	os.WriteFile(short, []byte("secret"), 0o600)
	for _, tc := range []struct {
		name, admin, want string
	}{
		{"no token_file", "listen = \"" + FreeAddr(t, "127.0.0.1") + "\"", "admin.token_file"},
		{"shared token file", "listen = \"" + FreeAddr(t, "127.0.0.1") + "\"\ntoken_file = \"" + shared + "\"", "chmod 600"},
		{"short token", "listen = \"" + FreeAddr(t, "127.0.0.1") + "\"\ntoken_file = \"" + short + "\"", "at least 32"},
		{"missing token file", "listen = \"" + FreeAddr(t, "127.0.0.1") + "\"\ntoken_file = \"" + filepath.Join(dir, "nope") + "\"", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := instanceDir(t, "badadmin")
			cfg := filepath.Join(d, "moat.toml")
			text := strings.NewReplacer("{{listen}}", FreeAddr(t, "127.0.0.1"), "{{backend}}", b.Addr, "{{data_dir}}", filepath.Join(d, "data")).
				Replace(moatConfig("\n[admin]\n" + tc.admin + "\n"))
			if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, m.bin, "run", "-c", cfg)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("moat run with %s: %v, want a start-up error; output:\n%s", tc.name, err, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("moat run with %s says:\n%s\nwant it to say %q", tc.name, out.String(), tc.want)
			}
		})
	}
}
