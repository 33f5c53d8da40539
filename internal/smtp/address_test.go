package smtp

import "testing"

func TestNormalize(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means an error
	}{
		{"user@example.org", "user@example.org"},
		{"User@Example.ORG", "user@example.org"},
		{"  user@example.org\t", "user@example.org"},
		{"user@example.org.", "user@example.org"},
		{"user+tag@example.org", "user+tag@example.org"},
		{"john..doe@example.org", "john..doe@example.org"},
		{".x@example.org", ".x@example.org"},
		{"@a.example,@b.example:User@Dom.example", "user@dom.example"},
		{"@a.example:u@d.example", "u@d.example"},
		{"postmaster", "postmaster"},
		{"PostMaster", "postmaster"},
		{"Postmaster@Example.org", "postmaster@example.org"},
		{`"john"@example.org`, "john@example.org"},
		{`"John.Doe"@example.org`, "john.doe@example.org"},
		{`"John Doe"@example.org`, `"john doe"@example.org`},
		{`"a@b"@example.org`, `"a@b"@example.org`},
		{`"a\"b"@example.org`, `"a\"b"@example.org`},
		{`"\j\o\e"@example.org`, "joe@example.org"},
		{`""@example.org`, `""@example.org`},
		{"u@[192.0.2.1]", "u@[192.0.2.1]"},
		{"u@[IPv6:2001:DB8::1]", "u@[ipv6:2001:db8::1]"},
		{"J\u00d6RG@B\u00dcCHER.example", "j\u00f6rg@b\u00fccher.example"},

		{"", ""},
		{"user", ""},
		{"user@", ""},
		{"@example.org", ""},
		{"user@@example.org", ""},
		{"a@b@example.org", ""},
		{"user@example..org", ""},
		{"user@.example.org", ""},
		{"user@example.org..", ""},
		{"user@.", ""},
		{"us er@example.org", ""},
		{"user@exa mple.org", ""},
		{"us<er@example.org", ""},
		{"user@ex(ample.org", ""},
		{"user\x00@example.org", ""},
		{"user@example.org\r", ""},
		{"user\xff@example.org", ""},
		{`"unterminated@example.org`, ""},
		{`"a"b"@example.org`, ""},
		{`"a\"@example.org`, ""},
		{"u@[", ""},
		{"u@[]", ""},
		{"u@[1.2.3.4", ""},
		{"u@[1.2]3]", ""},
		{"@a.example", ""},
		{"@a.example:", ""},
		{"postmaster@", ""},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Normalize(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			continue
		}
		if again, err := Normalize(got); again != got || err != nil {
			t.Errorf("Normalize(%q) = %q, %v; not idempotent", got, again, err)
		}
	}
}

func TestDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"user@example.org", "example.org"},
		{`"a@b"@example.org`, "example.org"},
		{"postmaster", ""},
		{"", ""},
		{"u@[192.0.2.1]", "[192.0.2.1]"},
	}
	for _, tt := range tests {
		if got := Domain(tt.in); got != tt.want {
			t.Errorf("Domain(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
