package reputation

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseLine: no line crashes a parser, and a verdict always names a
// valid address that is not moat's own.
func FuzzParseLine(f *testing.F) {
	f.Add("2025-01-01 10:00:00 #1(rspamd_proxy) <a>; proxy; rspamd_task_write_log: id: <x>, ip: 192.0.2.1, from: <a@b>, (default: T (reject): [20.00/15.00] []), len: 1")
	f.Add("Jan  1 10:00:00 mx amavis[1]: (1-1) Blocked SPAM {X,Y}, [192.0.2.20]:1 <a@b> -> <c@d>, Hits: 9")
	f.Add("Jan  1 10:00:00 mx postfix/cleanup[1]: 4F1C2D: milter-reject: END-OF-MESSAGE from unknown[192.0.2.30]: 5.7.1 Gtube pattern;")
	f.Fuzz(func(t *testing.T, line string) {
		for _, format := range []string{FormatRspamd, FormatSpamAssassin, FormatPostfix} {
			fb, ok := ParseLine(format, line)
			if ok && (!fb.IP.IsValid() || fb.IP.IsUnspecified() || fb.IP == netip.MustParseAddr("127.0.0.1") ||
				fb.Verdict != Spam && fb.Verdict != Ham || fb.Source != format) {
				t.Fatalf("%s %q: %+v", format, line, fb)
			}
		}
	})
}

// client is the host every injection template is about: the one the
// program itself named.
var client = netip.MustParseAddr("192.0.2.77")

// injectionLines are real lines of each program with {X} where the program
// writes what a client sent (Message-ID, envelope addresses, HELO), and
// the verdict the line really carries ("" for none). rspamd writes a space
// in a Message-ID as "?"; Postfix writes one in a HELO name as "?".
var injectionLines = []struct {
	format, line string
	verdict      Verdict
}{
	{"", "Dec 01 17:33:17 backend postfix/cleanup[9768]: E510398658E: message-id=<{X}>", ""},
	{"", "Dec 01 17:33:18 backend postfix/qmgr[9760]: 4238D98658E: from=<{X}>, size=458, nrcpt=1 (queue active)", ""},
	{"", "Dec 01 17:33:18 backend postfix/smtpd[9765]: NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 550 5.1.1 <n@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<{X}> to=<n@example.test> proto=ESMTP helo=<{H}>", ""},
	{"", "Dec 01 17:33:18 backend postfix/smtpd[9765]: NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 552 5.2.2 <{X}>: Recipient address rejected: Mailbox full; from=<{X}> to=<{X}> proto=ESMTP helo=<{H}>", ""},
	{"", "Jan  1 10:00:00 mx spamd[99]: spamd: result: Y 15 - GTUBE scantime=0.1,size=700,user=x,uid=1,required_score=5.0,rhost=localhost,raddr=127.0.0.1,rport=4000,mid=<{X}>,autolearn=no", ""},
	{FormatPostfix, "Dec 01 17:33:18 backend postfix/cleanup[9768]: E510398658E: milter-reject: END-OF-MESSAGE from unknown[192.0.2.77]: 5.7.1 Gtube pattern; from=<{X}> to=<{X}> proto=ESMTP helo=<{H}>", Spam},
	{FormatPostfix, "Dec 01 17:33:18 backend postfix/smtpd[9765]: NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 554 5.7.1 <{X}>: Relay access denied; from=<{X}> to=<{X}> proto=ESMTP helo=<{H}>", Spam},
	{FormatRspamd, "2026-12-01 17:34:47 #12158(rspamd_proxy) <eee89f>; proxy; rspamd_task_write_log: id: <{M}>, qid: <15E1A984342>, ip: 192.0.2.77, from: <{X}>, (default: F (no action): [0.00/15.00] []), len: 190, time: 1.117ms, dns req: 0, digest: <ca071f89e2421fb90bcd05df865cee15> rcpts: <{X}>, ", Ham},
	{FormatRspamd, "2026-12-01 17:34:47 #12158(rspamd_proxy) <eee89f>; proxy; rspamd_task_write_log: id: <{M}>, qid: <15E1A984342>, ip: 192.0.2.77, from: <{X}>, (default: T (reject): [20.00/15.00] [GTUBE(0.00){}]), len: 190, time: 1.117ms, dns req: 0, digest: <ca071f89e2421fb90bcd05df865cee15> rcpts: <{X}>, ", Spam},
	{FormatSpamAssassin, "Jan  1 10:00:00 mx amavis[1234]: (01234-06) Passed CLEAN {RelayedInbound}, [192.0.2.77]:5555 [{X}] <{X}> -> <{X}>, Queue-ID: 4238D98658E, Message-ID: <{X}>, mail_id: x, Hits: -1.2, size: 800, 230 ms", Ham},
	{FormatSpamAssassin, "Jan  1 10:00:00 mx amavis[1234]: (01234-07) Blocked SPAM {DiscardedInbound}, [192.0.2.77]:5555 <{X}> -> <{X}>, Queue-ID: 4238D98658E, Message-ID: <{X}>, Hits: 20.5", Spam},
}

// FuzzInjection: whatever a client writes in the fields it controls, a line
// gives no verdict, or the verdict the program wrote about the client it
// named. The seed corpus (testdata/fuzz/FuzzInjection) holds every
// format's patterns, aimed at 198.51.100.11.
func FuzzInjection(f *testing.F) {
	f.Add("bob@sender.example")
	f.Fuzz(func(t *testing.T, x string) {
		// A line holds no line break: the follower splits on them.
		x = strings.NewReplacer("\n", "", "\r", "").Replace(x)
		r := strings.NewReplacer("{X}", x, "{H}", strings.ReplaceAll(x, " ", "?"), "{M}", strings.ReplaceAll(x, " ", "?"))
		// An ordinary address or name hides nothing: the verdict is
		// read, so the test is not passed by reading nothing.
		plain := x != "" && strings.Trim(x, "abcdefghijklmnopqrstuvwxyz0123456789.-@") == ""
		for _, tc := range injectionLines {
			line := r.Replace(tc.line)
			for _, format := range []string{FormatRspamd, FormatSpamAssassin, FormatPostfix} {
				fb, ok := ParseLine(format, line)
				if !ok {
					if plain && format == tc.format {
						t.Fatalf("%s read no verdict from\n%s\nwant %q", format, line, tc.verdict)
					}
					continue
				}
				if format != tc.format || fb.IP != client || fb.Verdict != tc.verdict {
					t.Fatalf("%s read %+v from\n%s\nwant %q", format, fb, line, tc.verdict)
				}
			}
		}
	})
}
