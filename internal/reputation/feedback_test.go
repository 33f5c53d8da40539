package reputation

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKarma(t *testing.T) {
	p := DefaultKarma()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var k Karma
	k = p.Add(k, Spam, t0)
	if k.Score != -1 || k.Spam != 1 {
		t.Fatalf("after one spam: %+v", k)
	}
	if got := k.Now(t0.Add(p.HalfLife), p.HalfLife); math.Abs(got+0.5) > 1e-9 {
		t.Errorf("after one half-life: %v, want -0.5", got)
	}
	k = p.Add(k, Spam, t0.Add(time.Minute))
	if k.Score >= p.BlackBelow {
		t.Errorf("two spams a minute apart: %v, want below %v", k.Score, p.BlackBelow)
	}
	k = p.Add(k, Ham, t0.Add(2*p.HalfLife))
	if k.Score > 0 || k.Ham != 1 {
		t.Errorf("ham after two half-lives: %+v", k)
	}
	if got := (Karma{Score: -1, At: t0}).Now(t0.Add(5*p.HalfLife), p.HalfLife); got != 0 {
		t.Errorf("-1 after five half-lives: %v, want 0 (faded)", got)
	}
	b := k.Marshal()
	k2, err := UnmarshalKarma(b)
	if err != nil || k2.Score != k.Score || !k2.At.Equal(k.At) || k2.Spam != 2 || k2.Ham != 1 {
		t.Errorf("round trip: %+v, %v", k2, err)
	}
	// Four hams let a white host absorb one spam and stay at or above 0.
	var w Karma
	for i := 0; i < 4; i++ {
		w = p.Add(w, Ham, t0)
	}
	w = p.Add(w, Spam, t0)
	if w.Score < p.GreyBelow {
		t.Errorf("4 ham + 1 spam: %v, want >= %v", w.Score, p.GreyBelow)
	}
}

func TestParseVerdict(t *testing.T) {
	for in, want := range map[string]Verdict{"spam": Spam, " HAM ": Ham} {
		if v, err := ParseVerdict(in); err != nil || v != want {
			t.Errorf("ParseVerdict(%q) = %v, %v", in, v, err)
		}
	}
	if _, err := ParseVerdict("junk"); err == nil {
		t.Error("ParseVerdict(junk): no error")
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		format, line string
		ip           string // "" for no verdict
		verdict      Verdict
		score        float64
	}{
		{FormatRspamd, `2025-01-01 10:00:00 #1234(rspamd_proxy) <8c7f1a>; proxy; rspamd_task_write_log: id: <x@y>, qid: <4F1C2D>, ip: 192.0.2.10, from: <a@b.test>, (default: T (reject): [1006.50/15.00] [GTUBE(0.00){},R_DKIM_NA(0.00){}]), len: 512, time: 10.2ms, dns req: 1, digest: <abc>, rcpts: <u@example.test>, mime_rcpts: <u@example.test>`,
			"192.0.2.10", Spam, 1006.5},
		{FormatRspamd, `... rspamd_task_write_log: id: <x>, ip: 2001:db8::5, from: <a@b>, (default: T (add header): [7.20/15.00] [X(1.0){}]), len: 5`,
			"2001:db8::5", Spam, 7.2},
		// rspamd 3.4 with a pre-result (GTUBE): flag S, no required score.
		{FormatRspamd, `2026-11-23 10:20:36 #2642(rspamd_proxy) <27ed63>; proxy; rspamd_task_write_log: id: <1@sender.test>, qid: <B691B986A29>, ip: 127.0.0.41, from: <bob@sender.test>, (default: S (reject): [0.00/nan] [GTUBE(0.00){}]), len: 185, time: 3.497ms, dns req: 0, digest: <5e1d> rcpts: <alice@example.test>,  mime_rcpt: <alice@example.test>, `,
			"127.0.0.41", Spam, 0},
		{FormatRspamd, `... rspamd_task_write_log: id: <x>, qid: <Q>, ip: 192.0.2.11, from: <a@b>, (default: F (no action): [-0.10/15.00] [A(0.00){}]), len: 5`,
			"192.0.2.11", Ham, -0.1},
		{FormatRspamd, `... rspamd_task_write_log: id: <x>, ip: 192.0.2.12, from: <a@b>, (default: F (soft reject): [3.00/15.00] []), len: 5`, "", "", 0},
		{FormatRspamd, `... rspamd_task_write_log: id: <x>, ip: 192.0.2.12, from: <a@b>, (default: F (greylist): [5.00/15.00] []), len: 5`, "", "", 0},
		{FormatRspamd, `2025-01-01 10:00:00 #1(main) <>; main; rspamd_main: starting`, "", "", 0},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx amavis[1234]: (01234-05) Blocked SPAM {DiscardedInbound,Quarantined}, [192.0.2.20]:41234 [198.51.100.9] <s@x.test> -> <u@example.test>, quarantine: spam-x, Queue-ID: ABC, Message-ID: <m@x>, mail_id: x, Hits: 1000.1, size: 800, 230 ms`,
			"192.0.2.20", Spam, 1000.1},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx amavis[1234]: (01234-06) Passed CLEAN {RelayedInbound}, [192.0.2.21]:5555 <s@x.test> -> <u@example.test>, Hits: -1.2, size: 800`,
			"192.0.2.21", Ham, -1.2},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx amavis[1234]: (01234-07) Passed SPAMMY {RelayedTaggedInbound}, ORIGINATING/MYNETS LOCAL [192.0.2.22]:5555 <s@x> -> <u@e>, Hits: 6.1`,
			"192.0.2.22", Spam, 6.1},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx amavis[1234]: (01234-08) Blocked INFECTED (Eicar) {DiscardedInbound}, [192.0.2.23]:5555 <s@x> -> <u@e>`, "", "", 0},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx spamd[99]: spamd: result: Y 15 - GTUBE scantime=0.1,size=700,user=x,uid=1,required_score=5.0,rhost=localhost,raddr=127.0.0.1,rport=4000,mid=<m>,autolearn=no`, "", "", 0},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx spamd[99]: spamd: result: Y 15 - GTUBE client [192.0.2.24] scantime=0.1`, "192.0.2.24", Spam, 15},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx spamd[99]: spamd: result: . -1 - ALL_TRUSTED client [192.0.2.25] scantime=0.1`, "192.0.2.25", Ham, -1},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/cleanup[77]: 4F1C2D: milter-reject: END-OF-MESSAGE from unknown[192.0.2.30]: 5.7.1 Gtube pattern; from=<a@b> to=<u@example.test> proto=ESMTP helo=<x>`,
			"192.0.2.30", Spam, 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from h.example[192.0.2.31]: 554 5.7.1 Service unavailable; Client host [192.0.2.31] blocked using bl.test; from=<a@b> to=<u@e> proto=ESMTP helo=<x>`,
			"192.0.2.31", Spam, 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from unknown[192.0.2.32]: 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@b> to=<nobody@example.test>`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from unknown[192.0.2.33]: 450 4.7.1 Try later`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/cleanup[77]: 4F: milter-reject: END-OF-MESSAGE from unknown[192.0.2.34]: 4.7.1 Try again later; from=<a@b>`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: connect from unknown[192.0.2.35]`, "", "", 0},
		{"nonsense", `anything [192.0.2.1]`, "", "", 0},
	} {
		fb, ok := ParseLine(tc.format, tc.line)
		if tc.ip == "" {
			if ok {
				t.Errorf("%s %q: got %+v, want no verdict", tc.format, tc.line, fb)
			}
			continue
		}
		if !ok || fb.IP != netip.MustParseAddr(tc.ip) || fb.Verdict != tc.verdict || fb.Score != tc.score || fb.Source != tc.format {
			t.Errorf("%s %q: got %+v %v, want %s %s %v", tc.format, tc.line, fb, ok, tc.ip, tc.verdict, tc.score)
		}
	}
}

func TestFollowerRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	spam := func(ip string) string {
		return "postfix/cleanup[1]: Q: milter-reject: END-OF-MESSAGE from unknown[" + ip + "]: 5.7.1 Gtube pattern; from=<a@b>\n"
	}
	appendTo := func(s string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	var got []string
	handle := func(fb Feedback) { got = append(got, fb.IP.String()) }

	appendTo(spam("192.0.2.1")) // history before moat started: not read
	fl := NewFollower(path, FormatPostfix, handle)
	appendTo(spam("192.0.2.2"))
	appendTo("half a line ")
	fl.Step()
	appendTo("that ends now\n" + spam("192.0.2.3")[:20])
	fl.Step()
	appendTo(spam("192.0.2.3")[20:])
	// Rotation by rename: the rest of the old file, then the new one from its start.
	appendTo(spam("192.0.2.4"))
	os.Rename(path, path+".1")
	fl.Step() // the path is gone for now
	appendTo(spam("192.0.2.5"))
	fl.Step()
	// copytruncate: cut to zero in place, then written again.
	os.Truncate(path, 0)
	fl.Step()
	appendTo(spam("192.0.2.6"))
	fl.Step()
	// An overlong line is dropped whole, the next one is read.
	big := make([]byte, maxLine+100)
	for i := range big {
		big[i] = 'x'
	}
	appendTo(string(big) + " reject: RCPT from x[192.0.2.99]: 554 5.7.1 no\n" + spam("192.0.2.7"))
	fl.Step()
	want := []string{"192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6", "192.0.2.7"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestFollowerWaitsForFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rspamd.log")
	var n int
	fl := NewFollower(path, FormatRspamd, func(Feedback) { n++ })
	fl.Step()
	os.WriteFile(path, []byte("x rspamd_task_write_log: id: <x>, ip: 192.0.2.1, from: <a@b>, (default: T (reject): [20.00/15.00] []), len: 1\n"), 0o600)
	fl.Step()
	if n != 1 {
		t.Errorf("a file created after start: %d verdicts read, want 1 (from its start)", n)
	}
}
