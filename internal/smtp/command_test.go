package smtp

import (
	"maps"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line string
		want Command
	}{
		{"EHLO mail.example.org", Command{"EHLO", "mail.example.org"}},
		{"ehlo mail.example.org", Command{"EHLO", "mail.example.org"}},
		{"MAIL FROM:<a@b> SIZE=10", Command{"MAIL", "FROM:<a@b> SIZE=10"}},
		{"rcpt to:<a@b>  ", Command{"RCPT", "to:<a@b>"}},
		{"QUIT", Command{"QUIT", ""}},
		{"  NOOP   x  ", Command{"NOOP", "x"}},
		{"DATA\t", Command{"DATA", ""}},
		{"HELO\tx", Command{"HELO", "x"}},
		{"HELO\tx y", Command{"HELO", "x y"}},
		{"HELO x\ty", Command{"HELO", "x\ty"}},
		{"", Command{"", ""}},
		{"   ", Command{"", ""}},
		// Only ASCII is folded: the long s must not become "RSET".
		{"r\u017fet", Command{"R\u017fET", ""}},
		{"GET / HTTP/1.0", Command{"GET", "/ HTTP/1.0"}},
	}
	for _, tt := range tests {
		if got := ParseCommand(tt.line); got != tt.want {
			t.Errorf("ParseCommand(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

func TestParseMailRcpt(t *testing.T) {
	p := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		rcpt   bool
		arg    string
		addr   string
		params map[string]string
		ok     bool
	}{
		{false, "FROM:<a@b>", "a@b", nil, true},
		{false, "from:<a@b>", "a@b", nil, true},
		{false, "From: <a@b>", "a@b", nil, true},
		{false, "FROM : <a@b>", "a@b", nil, true},
		{false, "FROM:<>", "", nil, true},
		{false, "FROM:<> SIZE=0", "", p("SIZE", "0"), true},
		{false, "FROM:<a@b> SIZE=123 BODY=8BITMIME", "a@b", p("SIZE", "123", "BODY", "8BITMIME"), true},
		{false, "FROM:<a@b> size=123 body=8bitmime", "a@b", p("SIZE", "123", "BODY", "8bitmime"), true},
		{false, "FROM:<a@b>  SMTPUTF8\t AUTH=<>", "a@b", p("SMTPUTF8", "", "AUTH", "<>"), true},
		{false, "FROM:<a@b> ENVID=x=y", "a@b", p("ENVID", "x=y"), true},
		{false, "FROM:<@relay.example,@r2.example:a@b>", "@relay.example,@r2.example:a@b", nil, true},
		{false, `FROM:<"john doe"@b>`, `"john doe"@b`, nil, true},
		{false, `FROM:<"a>b"@c>`, `"a>b"@c`, nil, true},
		{false, `FROM:<"a\"> b"@c>`, `"a\"> b"@c`, nil, true},
		{false, "FROM:a@b", "a@b", nil, true},
		{false, "FROM: a@b SIZE=5", "a@b", p("SIZE", "5"), true},
		{false, "FROM:<J\u00f6rg@b\u00fccher.example> SMTPUTF8", "J\u00f6rg@b\u00fccher.example", p("SMTPUTF8", ""), true},

		{false, "", "", nil, false},
		{false, "FROM", "", nil, false},
		{false, "FROM<a@b>", "", nil, false},
		{false, "TO:<a@b>", "", nil, false},
		{false, "FRO:<a@b>", "", nil, false},
		{false, "FROMX:<a@b>", "", nil, false},
		{false, "FROM:<a@b", "", nil, false},
		{false, "FROM:<a@b>x", "", nil, false},
		{false, "FROM:<a b@c>", "", nil, false},
		{false, "FROM:<<a@b>>", "", nil, false},
		{false, "FROM:<a\x00@b>", "", nil, false},
		{false, "FROM:<a@b> SIZE=1 SIZE=2", "", nil, false},
		{false, "FROM:<a@b> =1", "", nil, false},
		{false, "FROM:<a@b> -X=1", "", nil, false},
		{false, "FROM:<a@b> S_IZE=1", "", nil, false},
		{false, "FROM:<a@b> X=\x01", "", nil, false},
		{false, "FROM:", "", nil, false},
		{false, "FROM:a>b", "", nil, false},
		{false, `FROM:<"a@b>`, "", nil, false},

		{true, "TO:<a@b>", "a@b", nil, true},
		{true, "to: <a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b", "a@b", p("NOTIFY", "SUCCESS,FAILURE", "ORCPT", "rfc822;a@b"), true},
		{true, "TO:<postmaster>", "postmaster", nil, true},
		{true, "TO:<Postmaster>", "Postmaster", nil, true},
		{true, "TO:<>", "", nil, false},
		{true, "FROM:<a@b>", "", nil, false},
		{true, "TO:", "", nil, false},
	}
	for _, tt := range tests {
		parse, name := ParseMail, "ParseMail"
		if tt.rcpt {
			parse, name = ParseRcpt, "ParseRcpt"
		}
		addr, params, err := parse(tt.arg)
		if (err == nil) != tt.ok {
			t.Errorf("%s(%q) error = %v, want ok=%v", name, tt.arg, err, tt.ok)
			continue
		}
		if !tt.ok {
			if addr != "" || params != nil {
				t.Errorf("%s(%q) failed but returned %q, %v", name, tt.arg, addr, params)
			}
			continue
		}
		if addr != tt.addr || !maps.Equal(params, tt.params) {
			t.Errorf("%s(%q) = %q, %v; want %q, %v", name, tt.arg, addr, params, tt.addr, tt.params)
		}
		if len(tt.params) == 0 && params != nil {
			t.Errorf("%s(%q): params = %#v, want nil", name, tt.arg, params)
		}
	}
}
