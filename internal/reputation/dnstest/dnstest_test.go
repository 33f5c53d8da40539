package dnstest

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ask(t *testing.T, s *Server, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	r, _, err := c.Exchange(m, s.Addr)
	return r, err
}

// The server answers what was added, says NXDOMAIN for the rest, fails or
// stays silent for a zone when told, and counts the questions.
func TestServer(t *testing.T) {
	s := New(t)
	s.Add(t, `2.0.0.127.zen.test. 300 IN A 127.0.0.2`)
	r, err := ask(t, s, "2.0.0.127.zen.test", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("added record: %v, %v", r, err)
	}
	if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != "127.0.0.2" {
		t.Errorf("answer %v", r.Answer[0])
	}
	if r, err := ask(t, s, "3.0.0.127.zen.test", dns.TypeA); err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("unknown name: %v, %v; want NXDOMAIN", r, err)
	}
	s.Fail("bad.test.")
	if r, err := ask(t, s, "x.bad.test", dns.TypeA); err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("failing zone: %v, %v; want SERVFAIL", r, err)
	}
	s.Silent("slow.test.")
	if _, err := ask(t, s, "x.slow.test", dns.TypeA); err == nil {
		t.Error("silent zone answered")
	}
	if n := s.Queries("2.0.0.127.zen.test."); n != 1 {
		t.Errorf("Queries = %d, want 1", n)
	}
}
