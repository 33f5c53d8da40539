package traps

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/clock"
)

func TestLineMatcher(t *testing.T) {
	m := defaultMatcher(t)
	tests := []struct {
		line   string
		client string
		addr   string
	}{
		{"Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from x[1.2.3.4]: 550 5.1.1 <a@b>: Recipient address rejected: User unknown in virtual mailbox table;", "1.2.3.4", "a@b"},
		{"postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[2001:db8::7]: 550 5.1.1 <Sales@Example.org>: Recipient address rejected: User unknown in local recipient table; from=<>", "2001:db8::7", "Sales@Example.org"},
		{"postfix/smtpd[1]: NOQUEUE: reject: RCPT from h.example[192.0.2.9]:40213: 550 5.1.1 <x@example.org>: Recipient address rejected: User unknown in relay recipient table;", "192.0.2.9", "x@example.org"},
		{"postfix/smtpd[1]: NOQUEUE: reject: RCPT from h[192.0.2.9]: 450 4.7.1 <x@example.org>: Recipient address rejected: Greylisted", "", ""},
		{"postfix/smtpd[1]: NOQUEUE: reject: RCPT from h[192.0.2.9]: 554 5.7.1 <x@elsewhere.example>: Relay access denied;", "", ""},
		{"postfix/smtpd[1]: NOQUEUE: reject: RCPT from h[not-an-ip]: 550 5.1.1 <x@example.org>: Recipient address rejected: User unknown", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		o, ok := m.Match(tt.line)
		if ok != (tt.addr != "") {
			t.Errorf("Match(%q) = %v, want %v", tt.line, ok, tt.addr != "")
			continue
		}
		if ok && (o.Client != ip(tt.client) || o.Addr != tt.addr) {
			t.Errorf("Match(%q) = %s %s, want %s %s", tt.line, o.Client, o.Addr, tt.client, tt.addr)
		}
	}
	if _, err := NewLineMatcher(`reject: (?P<addr>\S+)`); err == nil {
		t.Error("a pattern without a client group was accepted")
	}
	if _, err := NewLineMatcher(`(`); err == nil {
		t.Error("a broken pattern was accepted")
	}
}

// TestMineSampleLog reads a sample Postfix log, plain and gzipped: the
// address four hosts were refused for becomes a candidate; the one two
// hosts asked for and the one-off do not; greylisting, relay denials and
// noise are not evidence.
func TestMineSampleLog(t *testing.T) {
	sample := filepath.Join("testdata", "postfix-mail.log")
	gz := filepath.Join(t.TempDir(), "mail.log.1.gz")
	raw, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(gz)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(raw)
	zw.Close()
	f.Close()
	for _, path := range []string{sample, gz} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			c := clock.NewFake(t0)
			st := newStore(t, c)
			m, err := NewMiner(MinerConfig{Clock: c}, st, newTrapSet(t, st))
			if err != nil {
				t.Fatal(err)
			}
			var obs []Observation
			lines, err := MineFile(path, defaultMatcher(t), func(o Observation) {
				obs = append(obs, o)
				if err := m.Targeted(o.Client, o.Addr, OriginLog); err != nil {
					t.Fatal(err)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.Count(string(raw), "\n"); lines != want {
				t.Errorf("%d lines read, want %d", lines, want)
			}
			if len(obs) != 7 {
				t.Errorf("%d rejections found, want 7: %v", len(obs), obs)
			}
			cs, err := m.Candidates()
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != 1 || cs[0].Addr != "sales2@example.org" || len(cs[0].Hosts) != 4 {
				t.Fatalf("candidates = %+v, want sales2@example.org from 4 hosts", cs)
			}
			if e, _, _ := m.Evidence("jsmith@example.org"); len(e.Hosts) != 2 {
				t.Errorf("jsmith: %d hosts, want 2 (one host in two cases is one host)", len(e.Hosts))
			}
			if got := m.LocalDomains(); strings.Join(got, " ") != "example.org" {
				t.Errorf("local domains learned from the log = %v, want [example.org]", got)
			}
		})
	}
}

func TestMineFileMissing(t *testing.T) {
	if _, err := MineFile(filepath.Join(t.TempDir(), "none.log"), defaultMatcher(t), func(Observation) {}); err == nil {
		t.Fatal("no error for a missing file")
	}
}
