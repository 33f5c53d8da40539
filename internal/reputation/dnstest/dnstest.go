// Package dnstest runs an authoritative DNS server on loopback for tests,
// as net/http/httptest does for HTTP: tests of DNS lists and SPF point
// moat at it and never ask real DNS.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server answers from a table of records on 127.0.0.1 (UDP and TCP, one
// random port). Names it has no records for get NXDOMAIN with an SOA, so
// negative answers are cached as real ones are; names under a zone
// marked Fail get SERVFAIL, and under a zone marked Silent no answer at
// all.
type Server struct {
	Addr string // host:port

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	fail    map[string]bool
	silent  map[string]bool
	queries map[string]int
	udp     *dns.Server
	tcp     *dns.Server
}

// New starts a server; it stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	// UDP and TCP on the same port: try ports until both are free.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatal(err)
		}
	}
	s := &Server{Addr: pc.LocalAddr().String(), records: map[string][]dns.RR{}, fail: map[string]bool{},
		silent: map[string]bool{}, queries: map[string]int{}}
	var started sync.WaitGroup
	started.Add(2)
	s.udp = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: started.Done}
	s.tcp = &dns.Server{Listener: ln, Handler: s, NotifyStartedFunc: started.Done}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	started.Wait()
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	return s
}

// Add adds records in zone file syntax: "4.3.2.1.bl.test. 300 IN A 127.0.0.2".
func (s *Server) Add(t testing.TB, rrs ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatalf("dnstest: %q: %v", text, err)
		}
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
}

// Fail makes every name under zone answer SERVFAIL.
func (s *Server) Fail(zone string) {
	s.mu.Lock()
	s.fail[dns.Fqdn(strings.ToLower(zone))] = true
	s.mu.Unlock()
}

// Silent makes every name under zone go unanswered (a timeout).
func (s *Server) Silent(zone string) {
	s.mu.Lock()
	s.silent[dns.Fqdn(strings.ToLower(zone))] = true
	s.mu.Unlock()
}

// Queries returns how many queries named name (any type).
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[dns.Fqdn(strings.ToLower(name))]
}

func under(name string, zones map[string]bool) bool {
	for z := range zones {
		if dns.IsSubDomain(z, name) {
			return true
		}
	}
	return false
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries[name]++
	silent, fail := under(name, s.silent), under(name, s.fail)
	rrs := s.records[name]
	s.mu.Unlock()
	switch {
	case silent:
		return
	case fail:
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, rr)
		}
	}
	if len(rrs) == 0 {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		soa, _ := dns.NewRR(". 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60")
		m.Ns = append(m.Ns, soa)
	}
	w.WriteMsg(m)
}
