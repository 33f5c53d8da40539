package traps

import (
	"strings"
	"testing"

	"moat/internal/config"
)

// rejectLines are real Postfix lines with {X} where Postfix writes what a
// client sent (Message-ID, envelope addresses; {H} a HELO name, whose
// spaces Postfix writes as "?"), and the recipient the line really reports
// as unknown: "" for none, "{X}" when the client chose it.
var rejectLines = []struct{ line, addr string }{
	{"Dec 01 17:33:17 backend postfix/cleanup[9768]: E510398658E: message-id=<{X}>", ""},
	{"Dec 01 17:33:18 backend postfix/qmgr[9760]: 4238D98658E: from=<{X}>, size=458, nrcpt=1 (queue active)", ""},
	{"Dec 01 17:33:18 backend postfix/smtpd[9765]: NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 550 5.1.1 <n@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<{X}> to=<n@example.test> proto=ESMTP helo=<{H}>", "n@example.test"},
	{"Dec 01 17:33:18 backend postfix/smtpd[9765]: NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 550 5.1.1 <{X}>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@b.test> to=<{X}> proto=ESMTP helo=<{H}>", "{X}"},
	{"Dec 01 17:33:18 backend postfix/smtpd[9765]: NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 552 5.2.2 <{X}>: Recipient address rejected: Mailbox full; from=<{X}> to=<{X}> proto=ESMTP helo=<{H}>", ""},
	{"Dec 01 17:33:18 backend postfix/smtpd[9765]: NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 554 5.7.1 <{X}>: Relay access denied; from=<{X}> to=<{X}> proto=ESMTP helo=<{H}>", ""},
	{"Dec 01 17:33:18 backend postfix/cleanup[9768]: E510398658E: milter-reject: END-OF-MESSAGE from unknown[192.0.2.77]: 5.7.1 Gtube pattern; from=<{X}> to=<{X}> proto=ESMTP helo=<{H}>", ""},
}

// FuzzInjection: whatever a client writes in the fields it controls, a
// line gives no observation, or the one Postfix wrote: the client it named
// and the recipient it refused. The seed corpus (testdata/fuzz/
// FuzzInjection) holds every format's patterns, aimed at 198.51.100.11.
// The pattern moat used to search with, now anchored, is held to the same.
func FuzzInjection(f *testing.F) {
	f.Add("bob@sender.example")
	builtin, err := NewLineMatcher("")
	if err != nil {
		f.Fatal(err)
	}
	legacy, err := NewLineMatcher(config.DefaultRejectPattern)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, x string) {
		x = strings.NewReplacer("\n", "", "\r", "").Replace(x)
		r := strings.NewReplacer("{X}", x, "{H}", strings.ReplaceAll(x, " ", "?"))
		plain := x != "" && strings.Trim(x, "abcdefghijklmnopqrstuvwxyz0123456789.-@") == "" &&
			strings.Count(x, "@") == 1 && !strings.HasPrefix(x, "@") && !strings.HasSuffix(x, "@")
		for _, tc := range rejectLines {
			line := r.Replace(tc.line)
			for _, m := range []*LineMatcher{builtin, legacy} {
				o, ok := m.Match(line)
				if !ok {
					if plain && tc.addr != "" && m == builtin {
						t.Fatalf("no observation from\n%s", line)
					}
					continue
				}
				if tc.addr == "" || o.Client != ip("192.0.2.77") || tc.addr != "{X}" && o.Addr != tc.addr {
					t.Fatalf("read %+v from\n%s\nwant client 192.0.2.77 and %q", o, line, tc.addr)
				}
			}
		}
	})
}
