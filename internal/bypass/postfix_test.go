package bypass

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePostfixLine(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       LogRecord
		ok         bool
	}{
		{"reject, RFC 3164 header",
			"Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from mail.example.com[192.0.2.1]: 550 5.1.1 <trap@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@example.com> to=<trap@example.org> proto=ESMTP helo=<mail.example.com>",
			LogRecord{Client: netip.MustParseAddr("192.0.2.1"), Rcpt: "trap@example.org"}, true},
		{"reject with port, bypass service, maillog_file header",
			"Dec 01 17:33:17 mx postfix/bypass/smtpd[9765]: NOQUEUE: reject: RCPT from unknown[192.0.2.1]:4711: 550 5.1.1 <Trap@Example.org>: Recipient address rejected: User unknown in local recipient table; from=<> to=<Trap@Example.org> proto=SMTP helo=<x>",
			LogRecord{Client: netip.MustParseAddr("192.0.2.1"), Rcpt: "Trap@Example.org"}, true},
		{"temporary reject of IPv6 client, RFC 3339 header, queue id",
			"2026-03-03T06:25:02.123456+01:00 mx postfix-in/smtpd[1207]: 4C1A22E01F: reject: RCPT from mail.example.net[2001:db8::25]: 450 4.1.1 <trap@example.org>: Recipient address rejected: unverified address; from=<a@b> to=<trap@example.org> proto=ESMTP helo=<h>",
			LogRecord{Client: netip.MustParseAddr("2001:db8::25"), Rcpt: "trap@example.org"}, true},
		{"access table REJECT without enhanced code",
			"Mar 13 06:25:02 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 554 <trap@example.org>: Recipient address rejected: spamtrap; from=<a@b> to=<trap@example.org> proto=ESMTP helo=<h>",
			LogRecord{Client: netip.MustParseAddr("192.0.2.1"), Rcpt: "trap@example.org"}, true},
		{"the same text again in the HELO hides nothing",
			"Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1 <trap@example.org>: Recipient address rejected: User unknown; from=<a@b> to=<trap@example.org> proto=ESMTP helo=<x>: Recipient address rejected: y>",
			LogRecord{Client: netip.MustParseAddr("192.0.2.1"), Rcpt: "trap@example.org"}, true},
		{"moat's own connection",
			"Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <trap@example.org>: Recipient address rejected: User unknown; from=<> to=<trap@example.org> proto=ESMTP helo=<mx>",
			LogRecord{}, false},
		{"client record",
			"Mar  3 06:25:02 mx postfix/bypass/smtpd[1207]: 4C1A22E01F: client=mail.example.com[192.0.2.7]:25000, sasl_method=PLAIN",
			LogRecord{Client: netip.MustParseAddr("192.0.2.7")}, true},
		{"client record, IPv4-mapped",
			"Mar  3 06:25:02 mx postfix/smtpd[1207]: 4C1A22E01F: client=unknown[::ffff:192.0.2.7]",
			LogRecord{Client: netip.MustParseAddr("192.0.2.7")}, true},

		{"sender rejected, not a recipient",
			"Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.0 <a@example.com>: Sender address rejected: Domain not found; from=<a@example.com> to=<trap@example.org> proto=ESMTP helo=<h>", LogRecord{}, false},
		{"relay denied",
			"Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 454 4.7.1 <trap@example.org>: Relay access denied; from=<a@b> to=<trap@example.org> proto=ESMTP helo=<h>", LogRecord{}, false},
		{"a fake reject in the HELO of another record",
			"Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: MAIL from x[192.0.2.9]: 554 5.7.1 refused; from=<a@b> proto=ESMTP helo=<reject: RCPT from y[192.0.2.1]: 550 5.1.1 <trap@example.org>: Recipient address rejected: x>", LogRecord{}, false},
		{"a fake client record in a cleanup line",
			"Mar  3 06:25:02 mx postfix/cleanup[1207]: 4C1A22E01F: message-id=<x postfix/smtpd[1]: 4C1A22E01F: client=y[192.0.2.1]>", LogRecord{}, false},
		{"another program",
			"Mar  3 06:25:02 mx postfix/postscreen[1207]: NOQUEUE: reject: RCPT from [192.0.2.1]:4711: 550 5.7.1 Service unavailable; client [192.0.2.1] blocked", LogRecord{}, false},
		{"not postfix",
			"Mar  3 06:25:02 mx evil/smtpd[1207]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1 <trap@example.org>: Recipient address rejected: x", LogRecord{}, false},
		{"client name with a bracket",
			"Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from x y[192.0.2.1]: 550 5.1.1 <trap@example.org>: Recipient address rejected: x", LogRecord{}, false},
		{"no header", "NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1 <trap@example.org>: Recipient address rejected: x", LogRecord{}, false},
		{"empty", "", LogRecord{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParsePostfixLine(tc.line)
			if ok != tc.ok || got != tc.want {
				t.Errorf("ParsePostfixLine = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// Whatever a client puts in the fields it controls, the client address
// read is the one Postfix wrote first, and a refused recipient is read
// only from its fixed place.
func FuzzParsePostfixLine(f *testing.F) {
	f.Add("a@b", "helo", "rcpt@example.org")
	f.Add("x>: Recipient address rejected: ", "reject: RCPT from y[192.0.2.9]: 550 5.1.1 <t@x>: Recipient address rejected: ", "t@x")
	f.Fuzz(func(t *testing.T, sender, helo, rcpt string) {
		if strings.ContainsAny(sender+helo+rcpt, "\n") {
			return
		}
		line := "Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1 <" + rcpt +
			">: Recipient address rejected: User unknown; from=<" + sender + "> to=<" + rcpt + "> proto=ESMTP helo=<" + helo + ">"
		r, ok := ParsePostfixLine(line)
		if !ok {
			return
		}
		if r.Client != netip.MustParseAddr("192.0.2.1") {
			t.Fatalf("client %s read from %q", r.Client, line)
		}
		if !strings.HasPrefix(rcpt, r.Rcpt) {
			t.Fatalf("recipient %q is not where Postfix wrote %q", r.Rcpt, rcpt)
		}
		// A MAIL record with the same client fields names no recipient.
		mail := "Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: MAIL from x[192.0.2.9]: 554 5.7.1 refused; from=<" + sender + "> proto=ESMTP helo=<" + helo + ">"
		if r, ok := ParsePostfixLine(mail); ok {
			t.Fatalf("a MAIL record read as %+v", r)
		}
	})
}
