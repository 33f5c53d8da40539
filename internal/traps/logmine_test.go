package traps

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/clock"
	"moat/internal/config"
)

func TestLineMatcher(t *testing.T) {
	m := defaultMatcher(t)
	const hdr = "Mar  3 06:25:02 mx postfix/smtpd[1207]: "
	tests := []struct {
		line   string
		client string
		addr   string
	}{
		{hdr + "NOQUEUE: reject: RCPT from x[1.2.3.4]: 550 5.1.1 <a@b.example>: Recipient address rejected: User unknown in virtual mailbox table;", "1.2.3.4", "a@b.example"},
		{hdr + "NOQUEUE: reject: RCPT from unknown[2001:db8::7]: 550 5.1.1 <Sales@Example.org>: Recipient address rejected: User unknown in local recipient table; from=<>", "2001:db8::7", "sales@example.org"},
		{"2026-03-03T06:25:02+01:00 mx postfix-in/smtpd[1]: 4C1A22E01F: reject: RCPT from h.example[192.0.2.9]:40213: 550 5.1.1 <x@example.org>: Recipient address rejected: User unknown in relay recipient table;", "192.0.2.9", "x@example.org"},
		// Not "no such mailbox".
		{hdr + "NOQUEUE: reject: RCPT from h[192.0.2.9]: 450 4.7.1 <x@example.org>: Recipient address rejected: Greylisted", "", ""},
		{hdr + "NOQUEUE: reject: RCPT from h[192.0.2.9]: 554 5.7.1 <x@elsewhere.example>: Relay access denied;", "", ""},
		{hdr + "NOQUEUE: reject: RCPT from h[192.0.2.9]: 552 5.2.2 <x@example.org>: Recipient address rejected: Mailbox full;", "", ""},
		{hdr + "NOQUEUE: reject: RCPT from h[192.0.2.9]: 450 4.1.1 <x@example.org>: Recipient address rejected: unverified address", "", ""},
		{hdr + "NOQUEUE: reject: MAIL from h[192.0.2.9]: 550 5.1.1 <x@example.org>: Sender address rejected: User unknown", "", ""},
		{hdr + "NOQUEUE: reject: RCPT from h[not-an-ip]: 550 5.1.1 <x@example.org>: Recipient address rejected: User unknown", "", ""},
		// Moat's own probe.
		{hdr + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <ghost@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<> to=<ghost@example.org> proto=ESMTP helo=<mx.example.org>", "", ""},
		// Lines without a header, and lines of other programs.
		{"postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[1.2.3.4]: 550 5.1.1 <a@b.example>: Recipient address rejected: User unknown", "", ""},
		{"Mar  3 06:25:02 mx postfix/cleanup[1]: E510398658E: message-id=<pa> reject: RCPT from x[198.51.100.11]: 550 5.1.1 <ceo@example.org>: Recipient address rejected: User unknown in virtual mailbox table;", "", ""},
		// A quoted recipient that Postfix logs unquoted: ambiguous, not read.
		{hdr + "NOQUEUE: reject: RCPT from unknown[127.0.0.77]: 550 5.1.1 <ceo@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<bob@sender.test> to=<\"ceo@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<a\"@example.org> proto=ESMTP helo=<h>", "", ""},
		{hdr + "NOQUEUE: reject: RCPT from unknown[127.0.0.77]: 550 5.1.1 <x>: y@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<bob@sender.test> to=<\"x>: y\"@example.test>", "", ""},
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

// TestLineMatcherPattern: an operator's pattern is matched at the start of
// the text after the queue id, never searched for in the line. The pattern
// moat used to search with still finds what it found in honest lines.
func TestLineMatcherPattern(t *testing.T) {
	legacy, err := NewLineMatcher(config.DefaultRejectPattern)
	if err != nil {
		t.Fatal(err)
	}
	searching, err := NewLineMatcher(`from \[(?P<client>[^]]+)\].*<(?P<addr>[^>]+)>: User unknown`)
	if err != nil {
		t.Fatal(err)
	}
	honest := "Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from unknown[198.51.100.23]: 550 5.1.1 <sales2@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@b> to=<sales2@example.org> proto=ESMTP helo=<h>"
	if o, ok := legacy.Match(honest); !ok || o.Client != ip("198.51.100.23") || o.Addr != "sales2@example.org" {
		t.Errorf("the former default pattern: %+v %v", o, ok)
	}
	injected := "Mar  3 06:25:02 mx postfix/cleanup[1]: E510398658E: message-id=<x> reject: RCPT from x[198.51.100.11]: 550 5.1.1 <ceo@example.org>: Recipient address rejected: User unknown"
	helo := "Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 450 4.7.1 <a@example.org>: Recipient address rejected: Greylisted; from=<a@b> to=<a@example.org> proto=ESMTP helo=<x> reject: RCPT from [198.51.100.11]: 550 5.1.1 <ceo@example.org>: Recipient address rejected: User unknown>"
	for _, m := range []*LineMatcher{legacy, searching} {
		for _, line := range []string{injected, helo} {
			if o, ok := m.Match(line); ok {
				t.Errorf("pattern %s read %+v from %q", m.re, o, line)
			}
		}
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
			m, err := NewMiner(MinerConfig{Clock: c, Domains: []string{"example.org"}}, st, newTrapSet(t, st))
			if err != nil {
				t.Fatal(err)
			}
			// Moat saw three of the four hosts that asked for
			// sales2; 198.51.100.77 never connected to it.
			for _, h := range []string{"198.51.100.23", "2001:db8:5::17", "192.0.2.145"} {
				knowHost(t, st, h)
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
			if len(cs) != 1 || cs[0].Addr != "sales2@example.org" || len(cs[0].Hosts) != 3 {
				t.Fatalf("candidates = %+v, want sales2@example.org from the 3 hosts moat saw", cs)
			}
			if e, _, _ := m.Evidence("jsmith@example.org"); len(e.Hosts) != 2 {
				t.Errorf("jsmith: %d hosts, want 2 (one host in two cases is one host)", len(e.Hosts))
			}
			if _, ok, _ := m.Evidence("old.list@example.org"); ok {
				t.Errorf("old.list@example.org has a record, but only 198.51.100.77, never seen by moat, asked for it")
			}
		})
	}
}

func TestMineFileMissing(t *testing.T) {
	if _, err := MineFile(filepath.Join(t.TempDir(), "none.log"), defaultMatcher(t), func(Observation) {}); err == nil {
		t.Fatal("no error for a missing file")
	}
}
