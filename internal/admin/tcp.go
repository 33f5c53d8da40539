package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// MinTokenLen is the shortest admin token moat accepts. A token is the
// only thing between the network and the power to whitelist a spammer, so
// it must be long enough that guessing is hopeless (openssl rand -hex 32
// gives 64 characters).
const MinTokenLen = 32

// LoadToken reads the bearer token for the TCP admin listener from path:
// the file's first line, surrounding white space removed. It refuses a
// file that other users may read, and a token shorter than MinTokenLen,
// with an error that names the file and the fix.
func LoadToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("admin: token_file: %w (create it with e.g. \"openssl rand -hex 32 > %s; chmod 600 %s\")", err, path, path)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return "", fmt.Errorf("admin: token_file %s: mode %04o lets other users read the token: chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin: token_file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if len(tok) < MinTokenLen {
		return "", fmt.Errorf("admin: token_file %s: the token has %d characters, want at least %d (e.g. \"openssl rand -hex 32\")", path, len(tok), MinTokenLen)
	}
	return tok, nil
}

// RequireToken serves h only to requests that carry
// "Authorization: Bearer TOKEN"; everything else gets 401 and learns
// nothing else. The comparison takes the same time whatever the guess
// (both sides are hashed first, so even the token's length does not leak).
func RequireToken(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		got, ok := strings.CutPrefix(auth, "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="moat"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"unauthorized"}` + "\n"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ServeTCP serves the API, /metrics and the dashboard on a TCP listener
// until ctx is done. Unlike the unix socket, whose file mode keeps other
// users out, a TCP port is open to anyone who can reach it: the token is
// the access control, and it travels in clear, so the listener belongs on
// loopback or a management network.
func (s *Service) ServeTCP(ctx context.Context, ln net.Listener, token string) error {
	if token == "" {
		return errors.New("admin: TCP listener without a token")
	}
	srv := &http.Server{
		Handler:           s.TCPHandler(token),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	return serveHTTP(ctx, ln, srv)
}

// TCPHandler is what the TCP listener serves: the dashboard's page to
// anyone (it holds no data), everything else only with the token.
//
// A browser is the one client that could be made to act for someone
// else, so the design leaves it nothing to be tricked with: the token is
// no cookie and no HTTP authentication the browser would add by itself,
// but a header the page's script sets after the operator typed the token
// (kept in the tab's sessionStorage). A page of another site cannot
// read it, and cannot send it. Requests a browser marks as coming from
// another site (Sec-Fetch-Site, Origin) are refused before the token is
// even looked at, and no CORS header is ever sent, so another site
// cannot read an answer either. The page's own Content-Security-Policy
// allows only its own scripts: markup that got into the data could not
// run even if the page ever failed to treat it as text.
func (s *Service) TCPHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /dashboard/", dashboardPage())
	mux.Handle("GET /{$}", http.RedirectHandler("/dashboard/", http.StatusFound))
	mux.Handle("/", RequireToken(token, s.Handler()))
	return pageHeaders(http.NewCrossOriginProtection().Handler(mux))
}

// pageHeaders adds the headers that keep a browser strict with the
// dashboard and its data.
func pageHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
