package logfollow

import (
	"net/netip"
	"testing"
)

func TestParseSyslog(t *testing.T) {
	for _, tc := range []struct {
		line, prog, text string
	}{
		{"Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: x", "postfix/smtpd", "NOQUEUE: reject: x"},
		{"Dec 01 17:33:17 backend postfix/cleanup[9768]: E510398658E: message-id=<a b>", "postfix/cleanup", "E510398658E: message-id=<a b>"},
		{"Mar 3 06:25:02 mx amavis[1]: (01-02) Passed CLEAN", "amavis", "(01-02) Passed CLEAN"},
		{"2026-03-03T06:25:02.123456+01:00 mx postfix-in/submission/smtpd[7]: t", "postfix-in/submission/smtpd", "t"},
		{"2026-03-03T06:25:02Z mx rspamd: <abc>; task; x", "rspamd", "<abc>; task; x"},
		// Not a header: nothing is read.
		{"postfix/smtpd[1]: NOQUEUE: reject: x", "", ""},
		{"Foo  3 06:25:02 mx postfix/smtpd[1]: x", "", ""},
		{"Mar  3 06:25 mx postfix/smtpd[1]: x", "", ""},
		{"Mar  3 06:25:02 mx postfix/smtpd[x]: x", "", ""},
		{"Mar  3 06:25:02 mx postfix/smtpd[1] x", "", ""},
		{"Mar  3 06:25:02 mx : x", "", ""},
		{"2026-13-03T06:25:02Z mx prog: x", "", ""},
		{"", "", ""},
	} {
		e, ok := ParseSyslog(tc.line)
		if ok != (tc.prog != "") || e.Program != tc.prog || e.Text != tc.text {
			t.Errorf("ParseSyslog(%q) = %+v %v, want %q %q", tc.line, e, ok, tc.prog, tc.text)
		}
	}
	if d := (Entry{Program: "postfix-in/submission/smtpd"}).Daemon(); d != "smtpd" {
		t.Errorf("Daemon = %q", d)
	}
	if d := (Entry{Program: "amavis"}).Daemon(); d != "amavis" {
		t.Errorf("Daemon = %q", d)
	}
}

func TestParseReject(t *testing.T) {
	for _, tc := range []struct {
		text   string
		want   Reject
		reject bool
	}{
		{"NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <a@b>: Recipient address rejected: User unknown; from=<x> to=<a@b> proto=ESMTP helo=<h>",
			Reject{QueueID: "NOQUEUE", Stage: "RCPT", Client: netip.MustParseAddr("192.0.2.1"), Code: 550, Status: "5.1.1",
				Rest: "<a@b>: Recipient address rejected: User unknown; from=<x> to=<a@b> proto=ESMTP helo=<h>"}, true},
		{"4C1A22E01F: milter-reject: END-OF-MESSAGE from mail.example[2001:db8::5]:25: 5.7.1 Gtube pattern; from=<x>",
			Reject{QueueID: "4C1A22E01F", Milter: true, Stage: "END-OF-MESSAGE", Client: netip.MustParseAddr("2001:db8::5"), Status: "5.7.1", Rest: "Gtube pattern; from=<x>"}, true},
		{"3Pw1ZX0qY4zJrJr: reject: DATA from h-1.example[192.0.2.3]: 554 5.7.1 no",
			Reject{QueueID: "3Pw1ZX0qY4zJrJr", Stage: "DATA", Client: netip.MustParseAddr("192.0.2.3"), Code: 554, Status: "5.7.1", Rest: "no"}, true},
		{"NOQUEUE: reject: RCPT from [192.0.2.4]:4711: 550 Service unavailable",
			Reject{QueueID: "NOQUEUE", Stage: "RCPT", Client: netip.MustParseAddr("192.0.2.4"), Code: 550, Rest: "Service unavailable"}, true},
		{"NOQUEUE: reject: RCPT from x[::ffff:192.0.2.5]: 450 4.7.1 later",
			Reject{QueueID: "NOQUEUE", Stage: "RCPT", Client: netip.MustParseAddr("192.0.2.5"), Code: 450, Status: "4.7.1", Rest: "later"}, true},
		// Moat's own connections say nothing about a client.
		{"NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.7.1 x", Reject{}, false},
		{"NOQUEUE: reject: RCPT from unknown[::1]: 550 5.7.1 x", Reject{}, false},
		// Not reject records, or not Postfix's fields.
		{"E510398658E: message-id=<pa> reject: RCPT from x[198.51.100.11]: 554 5.7.1 spam", Reject{}, false},
		{"4C1A22E01F: reject: header Subject: hi from x[192.0.2.9]; from=<a> to=<b>: 5.7.1 no", Reject{}, false},
		{"reject: RCPT from x[192.0.2.9]: 554 5.7.1 no", Reject{}, false},
		{"NOQUEUE: reject: RCPT from x y[192.0.2.9]: 554 5.7.1 no", Reject{}, false},
		{"NOQUEUE: reject: RCPT from x[192.0.2.9]:: 554 5.7.1 no", Reject{}, false},
		{"NOQUEUE: reject: RCPT from x[192.0.2.9] 554 5.7.1 no", Reject{}, false},
		{"NOQUEUE: reject: RCPT from x[not-an-ip]: 554 5.7.1 no", Reject{}, false},
		{"NOQUEUE: reject: RCPT from x[fe80::1%eth0]: 554 5.7.1 no", Reject{}, false},
		{"NOQUEUE: reject: RCPT from x[192.0.2.9]: no code at all", Reject{}, false},
		{"NOQUEUE: reject_warning: RCPT from x[192.0.2.9]: 554 5.7.1 no", Reject{}, false},
	} {
		r, ok := ParseReject(tc.text)
		if ok != tc.reject || r != tc.want {
			t.Errorf("ParseReject(%q)\n got %+v %v\nwant %+v %v", tc.text, r, ok, tc.want, tc.reject)
		}
	}
	if !(Reject{Code: 550}).Permanent() || !(Reject{Status: "5.7.1"}).Permanent() || (Reject{Code: 450, Status: "4.7.1"}).Permanent() {
		t.Error("Permanent is wrong")
	}
}

func TestSplitStatus(t *testing.T) {
	for _, tc := range []struct{ in, status, rest string }{
		{"5.1.1 <a@b>: x", "5.1.1", "<a@b>: x"},
		{"4.7.1", "4.7.1", ""},
		{"5.7.100 x", "5.7.100", "x"},
		{"5.1 x", "", "5.1 x"},
		{"3.1.1 x", "", "3.1.1 x"},
		{"5.1.1x y", "", "5.1.1x y"},
		{"5.1.1000 y", "", "5.1.1000 y"},
		{"Unrouteable address", "", "Unrouteable address"},
	} {
		if s, r := SplitStatus(tc.in); s != tc.status || r != tc.rest {
			t.Errorf("SplitStatus(%q) = %q %q, want %q %q", tc.in, s, r, tc.status, tc.rest)
		}
	}
}

func TestClientAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1": "192.0.2.1", "::ffff:192.0.2.1": "192.0.2.1", "2001:db8::1": "2001:db8::1",
		"127.0.0.2": "127.0.0.2", "127.0.0.1": "", "::1": "", "::ffff:127.0.0.1": "", "0.0.0.0": "", "::": "",
		"fe80::1%eth0": "", "192.0.2.1:25": "", "": "", "x": "",
	} {
		a, ok := ClientAddr(in)
		if ok != (want != "") || ok && a.String() != want {
			t.Errorf("ClientAddr(%q) = %v %v, want %q", in, a, ok, want)
		}
	}
}
