package reputation

import (
	"math"
	"net/netip"
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

func TestKarmaRange(t *testing.T) {
	p := DefaultKarma()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if lo, hi := p.Range(); lo != -3.5 || hi != 1 {
		t.Fatalf("Range() = %v, %v, want -3.5, 1", lo, hi)
	}
	// Eight clean messages do not absorb two spam verdicts.
	var k Karma
	for i := 0; i < 8; i++ {
		k = p.Add(k, Ham, t0)
	}
	if k.Score != 1 {
		t.Errorf("after 8 ham: %v, want the top of the range, 1", k.Score)
	}
	k = p.Add(k, Spam, t0)
	if k.Score < p.GreyBelow {
		t.Errorf("8 ham + 1 spam: %v, want still >= %v", k.Score, p.GreyBelow)
	}
	k = p.Add(k, Spam, t0)
	if k.Score >= p.GreyBelow {
		t.Errorf("8 ham + 2 spam: %v, want below %v", k.Score, p.GreyBelow)
	}
	// Twenty spam verdicts: at the bottom, and above black_below again
	// within a half-life and a quarter.
	for i := 0; i < 20; i++ {
		k = p.Add(k, Spam, t0)
	}
	if k.Score != -3.5 || k.Spam != 22 || k.Ham != 8 {
		t.Errorf("after 20 more spam: %+v, want score -3.5 and every verdict counted", k)
	}
	if now := k.Now(t0.Add(p.HalfLife*5/4), p.HalfLife); now < p.BlackBelow {
		t.Errorf("1.25 half-lives later: %v, want above %v", now, p.BlackBelow)
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
		{FormatRspamd, `Jan  1 10:00:00 mx rspamd[77]: <8c7f1a>; task; rspamd_task_write_log: id: <x>, ip: 2001:db8::5, from: <a@b>, (default: T (add header): [7.20/15.00] [X(1.0){}]), len: 5`,
			"2001:db8::5", Spam, 7.2},
		// rspamd 3.4 with a pre-result (GTUBE): flag S, no required score.
		{FormatRspamd, `2026-11-23 10:20:36 #2642(rspamd_proxy) <27ed63>; proxy; rspamd_task_write_log: id: <1@sender.test>, qid: <B691B986A29>, ip: 127.0.0.41, from: <bob@sender.test>, (default: S (reject): [0.00/nan] [GTUBE(0.00){}]), len: 185, time: 3.497ms, dns req: 0, digest: <5e1d> rcpts: <alice@example.test>,  mime_rcpt: <alice@example.test>, `,
			"127.0.0.41", Spam, 0},
		{FormatRspamd, `2025-01-01 10:00:00.123 #1(rspamd_proxy) <a>; proxy; rspamd_task_write_log: id: <x>, qid: <Q1A2B3>, ip: 192.0.2.11, (default: F (no action): [-0.10/15.00] [A(0.00){}]), len: 5`,
			"192.0.2.11", Ham, -0.1},
		{FormatRspamd, `2025-01-01 10:00:00 #1(rspamd_proxy) <a>; proxy; rspamd_task_write_log: id: <x>, ip: 192.0.2.12, from: <a@b>, (default: F (soft reject): [3.00/15.00] []), len: 5`, "", "", 0},
		{FormatRspamd, `2025-01-01 10:00:00 #1(rspamd_proxy) <a>; proxy; rspamd_task_write_log: id: <x>, ip: 192.0.2.12, from: <a@b>, (default: F (greylist): [5.00/15.00] []), len: 5`, "", "", 0},
		{FormatRspamd, `2025-01-01 10:00:00 #1(main) <>; main; rspamd_main: starting`, "", "", 0},
		// moat's own probe is nobody's evidence.
		{FormatRspamd, `2025-01-01 10:00:00 #1(rspamd_proxy) <a>; proxy; rspamd_task_write_log: id: <x>, ip: 127.0.0.1, from: <a@b>, (default: T (reject): [20.00/15.00] []), len: 5`, "", "", 0},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx amavis[1234]: (01234-05) Blocked SPAM {DiscardedInbound,Quarantined}, [192.0.2.20]:41234 [198.51.100.9] <s@x.test> -> <u@example.test>, quarantine: spam-x, Queue-ID: ABC, Message-ID: <m@x>, mail_id: x, Hits: 1000.1, size: 800, 230 ms`,
			"192.0.2.20", Spam, 0},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx amavis[1234]: (01234-06) Passed CLEAN {RelayedInbound}, [192.0.2.21]:5555 <s@x.test> -> <u@example.test>, Hits: -1.2, size: 800`,
			"192.0.2.21", Ham, 0},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx amavis[1234]: (01234-07) Passed SPAMMY {RelayedTaggedInbound}, ORIGINATING/MYNETS LOCAL [192.0.2.22]:5555 <s@x> -> <u@e>, Hits: 6.1`,
			"192.0.2.22", Spam, 0},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx amavis[1234]: (01234-08) Blocked INFECTED (Eicar) {DiscardedInbound}, [192.0.2.23]:5555 <s@x> -> <u@e>`, "", "", 0},
		// Without the client's port, the first address is amavis's guess
		// from the Received headers: a client's words.
		{FormatSpamAssassin, `Jan  1 10:00:00 mx amavis[1234]: (01234-09) Blocked SPAM {DiscardedInbound}, [198.51.100.9] <s@x> -> <u@e>, Hits: 9`, "", "", 0},
		// spamd names only its spamc client, never the SMTP client.
		{FormatSpamAssassin, `Jan  1 10:00:00 mx spamd[99]: spamd: result: Y 15 - GTUBE scantime=0.1,size=700,user=x,uid=1,required_score=5.0,rhost=localhost,raddr=127.0.0.1,rport=4000,mid=<m>,autolearn=no`, "", "", 0},
		{FormatSpamAssassin, `Jan  1 10:00:00 mx spamd[99]: spamd: result: Y 15 - GTUBE client [192.0.2.24] scantime=0.1`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/cleanup[77]: 4F1C2D: milter-reject: END-OF-MESSAGE from unknown[192.0.2.30]: 5.7.1 Gtube pattern; from=<a@b> to=<u@example.test> proto=ESMTP helo=<x>`,
			"192.0.2.30", Spam, 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from h.example[192.0.2.31]: 554 5.7.1 Service unavailable; Client host [192.0.2.31] blocked using bl.test; from=<a@b> to=<u@e> proto=ESMTP helo=<x>`,
			"192.0.2.31", Spam, 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/postscreen[77]: NOQUEUE: reject: RCPT from [192.0.2.36]:4711: 550 5.7.1 Service unavailable; client [192.0.2.36] blocked using zen.test; from=<a@b>, to=<u@e>, proto=ESMTP, helo=<x>`,
			"192.0.2.36", Spam, 0},
		// Mailbox state is not spam: no such user, mailbox full, mail system.
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from unknown[192.0.2.32]: 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@b> to=<nobody@example.test>`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from unknown[192.0.2.37]: 552 5.2.2 <full@example.test>: Recipient address rejected: Mailbox full; from=<a@b> to=<full@example.test>`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from unknown[192.0.2.38]: 550 5.3.0 <x@example.test>: Recipient address rejected: mail system error; from=<a@b>`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from unknown[192.0.2.39]: 550 5.1.0 <a@b>: Sender address rejected: User unknown; from=<a@b>`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from unknown[192.0.2.33]: 450 4.7.1 Try later`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/cleanup[77]: 4F1C2D: milter-reject: END-OF-MESSAGE from unknown[192.0.2.34]: 4.7.1 Try again later; from=<a@b>`, "", "", 0},
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: connect from unknown[192.0.2.35]`, "", "", 0},
		// moat's own probe, refused by policy: nobody's evidence.
		{FormatPostfix, `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.7.1 <p@example.test>: Recipient address rejected: Access denied; from=<> to=<p@example.test> proto=ESMTP helo=<mx.example.test>`, "", "", 0},
		{"nonsense", `Jan  1 10:00:00 mx postfix/smtpd[77]: NOQUEUE: reject: RCPT from unknown[192.0.2.31]: 554 5.7.1 x`, "", "", 0},
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

// TestParseLineQueueID: rspamd's qid, its own field before the client's,
// names the message; a line without one names none.
func TestParseLineQueueID(t *testing.T) {
	for line, want := range map[string]string{
		`2025-01-01 10:00:00.123 #1(rspamd_proxy) <a>; proxy; rspamd_task_write_log: id: <x>, qid: <Q1A2B3>, ip: 192.0.2.11, (default: F (no action): [-0.10/15.00] [A(0.00){}]), len: 5`: "Q1A2B3",
		`Jan  1 10:00:00 mx rspamd[77]: <8c7f1a>; task; rspamd_task_write_log: id: <x>, ip: 2001:db8::5, from: <a@b>, (default: T (add header): [7.20/15.00] [X(1.0){}]), len: 5`:         "",
	} {
		fb, ok := ParseLine(FormatRspamd, line)
		if !ok || fb.QueueID != want {
			t.Errorf("%q: queue id %q (%v), want %q", line, fb.QueueID, ok, want)
		}
	}
}
