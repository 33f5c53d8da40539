package smtp

import (
	"strings"
	"testing"
)

func TestParseEHLO(t *testing.T) {
	r := Reply{Code: 250, Lines: []string{"backend.example SIZE 1", "PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "STARTTLS",
		"ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"}}
	want := Extensions{Size: 10240000, EightBit: true, SMTPUTF8: true, DSN: true, StartTLS: true}
	if got := ParseEHLO(r); got != want {
		t.Errorf("ParseEHLO = %+v, want %+v (the first line is the name)", got, want)
	}
	if got := ParseEHLO(Reply{Code: 250, Lines: []string{"b", "size 0", "8bitmime"}}); got != (Extensions{EightBit: true}) {
		t.Errorf("ParseEHLO(size 0, lower case) = %+v", got)
	}
}

func TestCheckParams(t *testing.T) {
	all := Extensions{Size: 1000, EightBit: true, SMTPUTF8: true, DSN: true}
	for _, tc := range []struct {
		arg  string
		ext  Extensions
		want string // the parameters as passed on, or the refusal's code
	}{
		{"FROM:<a@b>", all, ""},
		{"FROM:<a@b> SIZE=1000 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=QQ+2B1", all, " SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1"},
		{"FROM:<a@b> SIZE=1001", all, "552"},
		{"FROM:<a@b> SIZE=-1", all, "501"},
		{"FROM:<a@b> SIZE=+5", all, "501"},
		{"FROM:<a@b> SIZE", all, "501"},
		{"FROM:<a@b> BODY=BINARYMIME", all, "501"},
		{"FROM:<a@b> SMTPUTF8=yes", all, "501"},
		{"FROM:<a@b> RET=ALL", all, "501"},
		{"FROM:<a@b> ENVID=a=b", all, "501"},
		{"FROM:<a@b> ENVID=" + strings.Repeat("x", 101), all, "501"},
		{"FROM:<a@b> AUTH=<>", all, "555"},
		{"FROM:<a@b> BODY=8BITMIME", Extensions{}, "555"},
		{"FROM:<a@b> SMTPUTF8", Extensions{EightBit: true}, "555"},
		{"FROM:<a@b> RET=FULL", Extensions{EightBit: true}, "555"},
		{"FROM:<a@b> SIZE=99999999999", Extensions{}, " SIZE=99999999999"},
	} {
		_, params, err := ParseMail(tc.arg)
		if err != nil {
			t.Fatalf("ParseMail(%q): %v", tc.arg, err)
		}
		p, err := CheckMailParams(params, tc.ext)
		got := p.String()
		if err != nil {
			got = err.(*ParamError).Reply[:3]
		}
		if got != tc.want {
			t.Errorf("MAIL %s with %+v: %q, want %q", tc.arg, tc.ext, got, tc.want)
		}
	}
	for _, tc := range []struct {
		arg  string
		ext  Extensions
		utf8 bool
		want string
	}{
		{"TO:<a@b> NOTIFY=success,Failure ORCPT=rfc822;a@b", all, false, " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b"},
		{"TO:<a@b> NOTIFY=NEVER", all, false, " NOTIFY=NEVER"},
		{"TO:<a@b> NOTIFY=NEVER,SUCCESS", all, false, "501"},
		{"TO:<a@b> NOTIFY=DELAY,DELAY", all, false, "501"},
		{"TO:<a@b> NOTIFY=", all, false, "501"},
		{"TO:<a@b> ORCPT=a@b", all, false, "501"},
		{"TO:<a@b> ORCPT=rfc822;", all, false, "501"},
		{"TO:<a@b> ORCPT=rfc822;a+2Bb@c", all, false, " ORCPT=rfc822;a+2Bb@c"},
		{"TO:<a@b> ORCPT=rfc822;a+2bb@c", all, false, "501"},
		{"TO:<a@b> ORCPT=utf-8;\xc3\xa9@c", all, true, " ORCPT=utf-8;\xc3\xa9@c"},
		{"TO:<a@b> ORCPT=utf-8;\xc3\xa9@c", all, false, "501"},
		{"TO:<a@b> NOTIFY=SUCCESS", Extensions{}, false, "555"},
		{"TO:<a@b> FOO=1", all, false, "555"},
	} {
		_, params, err := ParseRcpt(tc.arg)
		if err != nil {
			t.Fatalf("ParseRcpt(%q): %v", tc.arg, err)
		}
		p, err := CheckRcptParams(params, tc.ext, tc.utf8)
		got := p.String()
		if err != nil {
			got = err.(*ParamError).Reply[:3]
		}
		if got != tc.want {
			t.Errorf("RCPT %s: %q, want %q", tc.arg, got, tc.want)
		}
	}
}

// What moat offers is what it can carry and the backend takes, the size
// the smaller of the two limits; the EHLO reply says exactly that.
func TestWordsLearn(t *testing.T) {
	w := NewWords("mx.test", false, true, 5000)
	if got := w.Offer().EHLO(false); got != "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 5000\r\n250-VRFY\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n" {
		t.Errorf("first offer %q", got)
	}
	if w.Learn(Extensions{Size: 9000, EightBit: true, SMTPUTF8: true, DSN: true, StartTLS: true}) {
		t.Error("a backend that takes everything changed the offer")
	}
	if !w.Learn(Extensions{Size: 3000, SMTPUTF8: true}) {
		t.Error("a smaller backend did not change the offer")
	}
	o := w.Offer()
	if o.Ext != (Extensions{Size: 3000, StartTLS: true}) {
		t.Errorf("offer %+v: SMTPUTF8 needs 8BITMIME, the size is the backend's", o.Ext)
	}
	if got := o.EHLO(true); got != "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 3000\r\n250-VRFY\r\n250 ENHANCEDSTATUSCODES\r\n" {
		t.Errorf("EHLO under TLS %q", got)
	}
	if w := NewWords("mx.test", true, false, 0); w.Banner() != "220-mx.test ESMTP Postfix (Debian/GNU)\r\n220 mx.test ESMTP Postfix (Debian/GNU)\r\n" ||
		w.BannerFirst()+w.BannerLast() != w.Banner() || strings.Contains(w.Offer().EHLO(false), "SIZE") {
		t.Errorf("split banner %q, or SIZE offered without a limit", w.Banner())
	}
}
