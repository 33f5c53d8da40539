package traps

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/clock"
)

func testBait(t testing.TB, key string) *Bait {
	t.Helper()
	b, err := NewBait([]byte(key), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const testKey = "0123456789abcdef0123456789abcdef"

func TestBaitRoundTrip(t *testing.T) {
	b := testBait(t, testKey)
	at := time.Date(2026, 3, 3, 6, 25, 42, 0, time.UTC)
	for _, v := range []string{"192.0.2.31", "2001:db8::31", "::ffff:198.51.100.7"} {
		a := b.Mint(ip(v), at)
		local, dom, _ := strings.Cut(a, "@")
		if dom != "example.org" || !strings.HasPrefix(local, BaitPrefix) || len(local) > 64 {
			t.Fatalf("Mint(%s) = %q: want b-…@example.org with a local part of at most 64", v, a)
		}
		if local != strings.ToLower(local) {
			t.Errorf("Mint(%s) = %q: not lower case", v, a)
		}
		for _, form := range []string{a, strings.ToUpper(a), " " + a + " "} {
			h, err := b.Decode(form)
			if err != nil {
				t.Fatalf("Decode(%q): %v", form, err)
			}
			if h.IP != ip(v).Unmap() || !h.At.Equal(at.Truncate(time.Minute)) || h.Addr != a {
				t.Errorf("Decode(%q) = %+v, want %s at %s", form, h, v, at.Truncate(time.Minute))
			}
		}
	}
	// Every view is unique, even from one visitor in one minute.
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		a := b.Mint(ip("192.0.2.31"), at)
		if seen[a] {
			t.Fatalf("Mint repeated %q", a)
		}
		seen[a] = true
	}
}

func TestBaitRejects(t *testing.T) {
	b := testBait(t, testKey)
	a := b.Mint(ip("192.0.2.31"), time.Date(2026, 3, 3, 6, 25, 0, 0, time.UTC))
	local, _, _ := strings.Cut(a, "@")
	// Change one character of the encoded body.
	flip := []byte(local)
	i := len(BaitPrefix) + 5
	if flip[i] == 'a' {
		flip[i] = 'b'
	} else {
		flip[i] = 'a'
	}
	tests := []struct {
		addr string
		want error
	}{
		{"sales@example.org", ErrNotBait},
		{"b-@example.org", ErrNotBait},
		{"b-sales@example.org", ErrNotBait},
		{"b-aaaaaaaa@example.org", ErrNotBait},
		{"not an address", ErrNotBait},
		{string(flip) + "@example.org", ErrBadSignature},
	}
	for _, tt := range tests {
		if _, err := b.Decode(tt.addr); !errors.Is(err, tt.want) {
			t.Errorf("Decode(%q) = %v, want %v", tt.addr, err, tt.want)
		}
	}
	other := testBait(t, "another key, another moat........")
	if _, err := other.Decode(a); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another key decoded %q: %v", a, err)
	}
	// A minted local part at any other domain is not bait: sent through
	// a provider's server, it would blacklist the provider.
	for _, d := range []string{"foreign.test", "mail.example.org", "example.org.evil.test"} {
		if _, err := b.Decode(local + "@" + d); !errors.Is(err, ErrOtherDomain) {
			t.Errorf("Decode at %s: %v, want ErrOtherDomain", d, err)
		}
	}
	nodomain, _ := NewBait([]byte(testKey), "")
	if _, err := nodomain.Decode(a); !errors.Is(err, ErrOtherDomain) {
		t.Errorf("a Bait without a domain decoded %q: %v", a, err)
	}
	if _, err := NewBait([]byte("short"), "example.org"); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

func TestSetIsBait(t *testing.T) {
	st := newStore(t, clock.NewFake(t0))
	s := newTrapSet(t, st, "trap@example.org")
	b := testBait(t, testKey)
	a := b.Mint(ip("192.0.2.31"), t0)
	if s.Is(a) {
		t.Fatal("a bait address is a trap before the set has the key")
	}
	s.SetBait(b)
	if !s.Is(a) || !s.Is("trap@example.org") {
		t.Fatal("Is is false for a minted address or a configured trap")
	}
	if s.Is("b-sales@example.org") {
		t.Fatal("a local part that merely starts like bait is a trap")
	}
	// Only in the bait domain, whether classify asks for a MAIL FROM or
	// a RCPT TO (both ask Is and Harvested).
	foreign := strings.TrimSuffix(a, "@example.org") + "@foreign.test"
	if s.Is(foreign) {
		t.Fatalf("%s is a trap: bait is recognised only at the bait domain", foreign)
	}
	if h, ok := s.Harvested(foreign); ok {
		t.Fatalf("%s names a harvester: %+v", foreign, h)
	}
	h, ok := s.Harvested(a)
	if !ok || h.IP != ip("192.0.2.31") {
		t.Fatalf("Harvested = %+v, %v", h, ok)
	}
	if !strings.Contains(h.Reason(), "harvested bait <"+a+"> at 2026-03-03T06:00:00Z") {
		t.Errorf("Reason() = %q", h.Reason())
	}
	if _, ok := s.Harvested("trap@example.org"); ok {
		t.Error("a configured trap was taken for bait")
	}
}

func TestLoadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "bait.key")
	k1, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || len(k1) != keyLen {
		t.Errorf("key file mode %v, %d bytes; want 0600 and %d", fi.Mode().Perm(), len(k1), keyLen)
	}
	k2, err := LoadKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load gave another key (%v)", err)
	}
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := LoadKey(path); err == nil {
		t.Error("a 5-byte key file was accepted")
	}
}

var mailto = regexp.MustCompile(`mailto:([^"]+)"`)

func TestPage(t *testing.T) {
	b := testBait(t, testKey)
	c := clock.NewFake(t0)
	p := &Page{Bait: b, Count: 4, Clock: c, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	get := func(path, remote, xff string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		return w
	}

	w := get("/robots.txt", "192.0.2.1:5000", "")
	if body := w.Body.String(); w.Code != 200 || !strings.Contains(body, "User-agent: *\nDisallow: /\n") {
		t.Fatalf("robots.txt: %d %q", w.Code, body)
	}

	tests := []struct {
		remote, xff string
		want        string // "" for a refusal
	}{
		{"192.0.2.31:5000", "", "192.0.2.31"},
		{"[2001:db8::31]:5000", "", "2001:db8::31"},
		{"192.0.2.31:5000", "198.51.100.1", "192.0.2.31"}, // forged header from an untrusted peer
		{"10.0.0.2:5000", "198.51.100.9, 203.0.113.5", "203.0.113.5"},
		{"10.0.0.2:5000", "203.0.113.5, 10.0.0.3", "203.0.113.5"}, // two trusted hops
		{"10.0.0.2:5000", "", ""},                                 // only the proxy: nobody to blame
		{"10.0.0.2:5000", "garbage", ""},
	}
	for _, tt := range tests {
		w := get("/contact/", tt.remote, tt.xff)
		if tt.want == "" {
			if w.Code != http.StatusBadRequest {
				t.Errorf("%s via %q: %d, want 400", tt.remote, tt.xff, w.Code)
			}
			continue
		}
		body := w.Body.String()
		if w.Code != 200 || w.Header().Get("Cache-Control") != "no-store, private" {
			t.Fatalf("%s: %d, Cache-Control %q", tt.remote, w.Code, w.Header().Get("Cache-Control"))
		}
		if !strings.Contains(body, `style="display:none" aria-hidden="true"`) || !strings.Contains(body, `name="robots" content="noindex`) {
			t.Errorf("the addresses are not hidden from people and screen readers:\n%s", body)
		}
		ms := mailto.FindAllStringSubmatch(body, -1)
		if len(ms) != 4 {
			t.Fatalf("%d addresses on the page, want 4:\n%s", len(ms), body)
		}
		for _, m := range ms {
			h, err := b.Decode(m[1])
			if err != nil {
				t.Fatalf("Decode(%q): %v", m[1], err)
			}
			if h.IP != ip(tt.want) || !h.At.Equal(t0) {
				t.Errorf("address names %s at %s, want %s at %s", h.IP, h.At, tt.want, t0)
			}
		}
	}

	r := httptest.NewRequest("POST", "/", io.NopCloser(strings.NewReader("x")))
	w = httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", w.Code)
	}
}

func TestSnippet(t *testing.T) {
	s := Snippet(`https://www.example.org/team/?a=1&b="2"`)
	for _, want := range []string{`href="https://www.example.org/team/?a=1&amp;b=&#34;2&#34;"`, `style="display:none"`, `aria-hidden="true"`, `rel="nofollow"`} {
		if !strings.Contains(s, want) {
			t.Errorf("snippet lacks %s:\n%s", want, s)
		}
	}
}

// FuzzBaitDecode: no input makes Decode panic, and whatever decodes
// decodes the same in its normal form.
func FuzzBaitDecode(f *testing.F) {
	b := testBait(f, testKey)
	f.Add(b.Mint(netip.MustParseAddr("192.0.2.31"), t0))
	f.Add(b.Mint(netip.MustParseAddr("2001:db8::1"), t0))
	f.Add("b-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org")
	f.Add("b-@x")
	f.Add("sales@example.org")
	f.Fuzz(func(t *testing.T, addr string) {
		h, err := b.Decode(addr)
		if err != nil {
			return
		}
		if !h.IP.IsValid() {
			t.Fatalf("Decode(%q) succeeded with no IP", addr)
		}
		h2, err := b.Decode(h.Addr)
		if err != nil || h2.IP != h.IP || !h2.At.Equal(h.At) {
			t.Fatalf("Decode(%q) = %+v, but its normal form %q gives %+v, %v", addr, h, h.Addr, h2, err)
		}
	})
}
