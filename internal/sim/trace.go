package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Kind is who sends a message.
type Kind uint8

const (
	Legit Kind = iota
	Spam
)

// Message is one delivery a sender sets out to make: its first attempt,
// who sends it and to whom. Its retries depend on what the policy answers,
// so they are not part of the trace; how they happen is fixed by the
// sender's Schedule and the message's own random stream, so every policy
// meets the same senders behaving the same way.
type Message struct {
	ID     int
	At     time.Time // first attempt
	Kind   Kind
	Type   int // index into Model.Legit or Model.Bots
	Host   int // index of the first address in the type's pool
	Sender string
	Rcpts  []string
	seed   uint64
}

// Trace is the messages of a model, in order of their first attempt.
type Trace struct {
	Model    *Model
	Messages []Message
	Counted  time.Time // first attempts before this are the warm-up
	Seed     uint64
}

// NewTrace draws the messages of m with seed: Poisson arrivals for every
// kind of sender at its daily rate, uniform over senders, hosts and
// mailboxes.
func NewTrace(m *Model, seed uint64) *Trace {
	from, start, end := m.Span()
	tr := &Trace{Model: m, Counted: start, Seed: seed}
	r := rand.New(rand.NewPCG(seed, 0x6d6f6174))
	span := end.Sub(from)
	gen := func(kind Kind, typ int, perDay float64, draw func(*Message, *rand.Rand)) {
		n := poisson(r, perDay*span.Hours()/24)
		for range n {
			msg := Message{Kind: kind, Type: typ, At: from.Add(time.Duration(r.Int64N(int64(span)))), seed: r.Uint64()}
			draw(&msg, r)
			tr.Messages = append(tr.Messages, msg)
		}
	}
	for i, s := range m.Legit {
		dom := senderDomain(s.Name)
		gen(Legit, i, s.MessagesPerDay, func(msg *Message, r *rand.Rand) {
			msg.Host = r.IntN(s.Hosts)
			msg.Sender = fmt.Sprintf("user%d@%s", r.IntN(s.Senders), dom)
			msg.Rcpts = distinct(r, 1+r.IntN(s.Rcpts), func() string { return mailbox(r, m) })
		})
	}
	for i, b := range m.Bots {
		gen(Spam, i, b.MessagesPerDay, func(msg *Message, r *rand.Rand) {
			msg.Host = r.IntN(b.Hosts)
			msg.Sender = fmt.Sprintf("%x@forged%d.example", r.Uint32(), r.IntN(1000))
			msg.Rcpts = distinct(r, 1+r.IntN(b.Rcpts), func() string {
				switch x := r.Float64(); {
				case x < b.TrapShare:
					return m.Site.Traps[r.IntN(len(m.Site.Traps))]
				case x < b.TrapShare+b.UnknownShare:
					return fmt.Sprintf("x%d@%s", r.IntN(100000), m.Site.Domain)
				}
				return mailbox(r, m)
			})
		})
	}
	sort.SliceStable(tr.Messages, func(i, j int) bool { return tr.Messages[i].At.Before(tr.Messages[j].At) })
	for i := range tr.Messages {
		tr.Messages[i].ID = i
	}
	return tr
}

// mailbox draws one of the site's real mailboxes.
func mailbox(r *rand.Rand, m *Model) string {
	return fmt.Sprintf("user%d@%s", r.IntN(m.Site.Mailboxes), m.Site.Domain)
}

// isMailbox reports whether rcpt is one of the site's real mailboxes:
// what the backend accepts.
func (m *Model) isMailbox(rcpt string) bool {
	local, ok := strings.CutSuffix(rcpt, "@"+m.Site.Domain)
	if !ok || !strings.HasPrefix(local, "user") {
		return false
	}
	var n int
	_, err := fmt.Sscanf(local, "user%d", &n)
	return err == nil && n >= 0 && n < m.Site.Mailboxes && local == fmt.Sprintf("user%d", n)
}

// distinct returns n different values of draw (fewer if draw keeps
// repeating itself).
func distinct(r *rand.Rand, n int, draw func() string) []string {
	var out []string
	for tries := 0; len(out) < n && tries < 4*n; tries++ {
		v := draw()
		dup := false
		for _, o := range out {
			dup = dup || o == v
		}
		if !dup {
			out = append(out, v)
		}
	}
	return out
}

// poisson draws a Poisson count with mean mu (normal approximation above
// a few hundred, where it is exact enough and Knuth's method is slow).
func poisson(r *rand.Rand, mu float64) int {
	if mu <= 0 {
		return 0
	}
	if mu > 500 {
		return max(0, int(math.Round(mu+math.Sqrt(mu)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-mu), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// senderDomain is the envelope domain of a kind of legitimate sender.
// Names under .example never leave the machine, and the simulator's SPF
// resolver answers for them from memory.
func senderDomain(name string) string { return name + ".example" }

// Address plan: each kind of sender has its own block of /24s, numbered
// from its base; host h of a pool of N networks is host h/N+1 of network
// h%N. Legitimate senders start at 11.0.0.0, bots at 64.0.0.0; every kind
// gets 65,536 networks. No simulated address is on loopback or in the
// documentation range SPF pools probe with (192.0.2.0/24).
const (
	legitBase = 11 << 16
	botBase   = 64 << 16
)

// addr is host h of the pool of kind k, type t.
func addr(k Kind, t int, p Pool, h int) netip.Addr {
	base := legitBase
	if k == Spam {
		base = botBase
	}
	nw := base + t*maxNetworks + h%p.Networks
	host := h/p.Networks + 1
	return netip.AddrFrom4([4]byte{byte(nw >> 16), byte(nw >> 8), byte(nw), byte(host)})
}

// network is the /24 number of host h in its pool.
func network(p Pool, h int) int { return h % p.Networks }

// spfResolver answers the SPF queries of SPF-aware pools from the model:
// the domain of a legitimate sender with spf set authorises every
// network of its pool, and nothing else has a record. It implements
// spf.DNSResolver without any network access.
type spfResolver struct {
	records map[string][]string
}

func newSPFResolver(m *Model) *spfResolver {
	res := &spfResolver{records: map[string][]string{}}
	for t, s := range m.Legit {
		if !s.SPF {
			continue
		}
		var b strings.Builder
		b.WriteString("v=spf1")
		for n := range s.Networks {
			p, _ := addr(Legit, t, s.Pool, n).Prefix(24)
			fmt.Fprintf(&b, " ip4:%s", p)
		}
		b.WriteString(" -all")
		res.records[senderDomain(s.Name)] = []string{b.String()}
	}
	return res
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *spfResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if txt, ok := r.records[strings.TrimSuffix(strings.ToLower(name), ".")]; ok {
		return txt, nil
	}
	return nil, notFound(name)
}

func (r *spfResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return nil, notFound(name)
}

func (r *spfResolver) LookupIPAddr(_ context.Context, name string) ([]net.IPAddr, error) {
	return nil, notFound(name)
}

func (r *spfResolver) LookupAddr(_ context.Context, name string) ([]string, error) {
	return nil, notFound(name)
}
