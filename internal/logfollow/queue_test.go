package logfollow

import (
	"net/netip"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		line string
		want Record // Kind 0: not read
	}{
		{"Mar  3 06:25:02 mx postfix/smtpd[1]: connect from mail.example[192.0.2.1]", Record{Kind: Connect, Client: ip}},
		{"Mar  3 06:25:02 mx postfix/smtpd[1]: connect from unknown[192.0.2.1]:4711", Record{Kind: Connect, Client: ip}},
		{"Mar  3 06:25:09 mx postfix/smtpd[1]: disconnect from mail.example[192.0.2.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5", Record{Kind: Disconnect, Client: ip}},
		{"Mar  3 06:25:03 mx postfix/smtpd[1]: 4C1A22E01F: client=mail.example[192.0.2.1]", Record{Kind: Queued, QueueID: "4C1A22E01F", Client: ip}},
		{"Mar  3 06:25:03 mx postfix/submission/smtpd[1]: 4C1A22E01F: client=h[192.0.2.1], sasl_method=PLAIN, sasl_username=u", Record{Kind: Queued, QueueID: "4C1A22E01F", Client: ip, Auth: true}},
		{"Mar  3 06:25:04 mx postfix/qmgr[2]: 4C1A22E01F: from=<a@example.org>, size=1234, nrcpt=1 (queue active)", Record{Kind: Sender, QueueID: "4C1A22E01F", Addr: "a@example.org"}},
		{"Mar  3 06:25:04 mx postfix/qmgr[2]: 4C1A22E01F: from=<>, size=1234, nrcpt=1 (queue active)", Record{Kind: Sender, QueueID: "4C1A22E01F"}},
		{"Mar  3 06:25:05 mx postfix/lmtp[3]: 4C1A22E01F: to=<b@example.net>, relay=mail.example.net[private/dovecot-lmtp], delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <b@example.net> Saved)",
			Record{Kind: Delivery, QueueID: "4C1A22E01F", Addr: "b@example.net", Status: "sent"}},
		{"Mar  3 06:25:05 mx postfix/local[3]: 4C1A22E01F: to=<b@example.net>, orig_to=<root>, relay=local, delay=0.2, delays=0.1/0/0/0.1, dsn=5.2.2, status=bounced (mailbox full)",
			Record{Kind: Delivery, QueueID: "4C1A22E01F", Addr: "b@example.net", Status: "bounced"}},
		{"Mar  3 06:25:01 mx postfix/postscreen[4]: PREGREET 11 after 0.08 from [192.0.2.1]:4711: EHLO bot\\r\\n", Record{Kind: Pregreet, Client: ip}},
		// An address that holds Postfix's separator is ambiguous: not read.
		{"Mar  3 06:25:04 mx postfix/qmgr[2]: 4C1A22E01F: from=<\"x>, size=1\"@example.org>, size=1234, nrcpt=1 (queue active)", Record{}},
		{"Mar  3 06:25:05 mx postfix/lmtp[3]: 4C1A22E01F: to=<\"a>, status=sent\"@example.net>, relay=x, status=bounced (x)", Record{}},
		// A remote reply is never read for a status.
		{"Mar  3 06:25:05 mx postfix/smtp[3]: 4C1A22E01F: to=<b@example.net>, relay=x[192.0.2.9]:25, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (lost; status=sent)",
			Record{Kind: Delivery, QueueID: "4C1A22E01F", Addr: "b@example.net", Status: "deferred"}},
		{"Mar  3 06:25:02 mx postfix/smtpd[1]: connect from mail.example[127.0.0.1]", Record{}},
		{"Mar  3 06:25:02 mx postfix/smtpd[1]: NOQUEUE: client=x[192.0.2.1]", Record{}},
		{"Mar  3 06:25:02 mx postfix/cleanup[1]: 4C1A22E01F: message-id=<a@b>", Record{}},
		{"Mar  3 06:25:02 mx postfix/smtpd[1]: lost connection after RCPT from x[192.0.2.1]", Record{}},
	} {
		e, ok := ParseSyslog(tc.line)
		if !ok {
			t.Fatalf("ParseSyslog(%q) failed", tc.line)
		}
		r, ok := ParseRecord(e)
		if ok != (tc.want.Kind != 0) || r != tc.want {
			t.Errorf("ParseRecord(%q) = %+v %v, want %+v", tc.line, r, ok, tc.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	for line, want := range map[string]time.Time{
		"Mar  3 06:25:02 mx postfix/smtpd[1]: x":             time.Date(2026, 3, 3, 6, 25, 2, 0, time.UTC),
		"Dec 01 17:33:17 mx postfix/smtpd[1]: x":             time.Date(2026, 12, 1, 17, 33, 17, 0, time.UTC),
		"2025-03-03T06:25:02.5+01:00 mx postfix/smtpd[1]: x": time.Date(2025, 3, 3, 5, 25, 2, 5e8, time.UTC),
		"Mar 31 23:59:59 mx postfix/smtpd[1]: x":             time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC),
	} {
		got, ok := ParseTime(line, 2026, time.UTC)
		if !ok || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %s %v, want %s", line, got, ok, want)
		}
	}
	for _, line := range []string{"Foo  3 06:25:02 mx p: x", "Feb 30 06:25:02 mx p: x", "2026-03-03 06:25:02 mx p: x"} {
		if _, ok := ParseTime(line, 2026, time.UTC); ok {
			t.Errorf("ParseTime(%q) read a time", line)
		}
	}
}
