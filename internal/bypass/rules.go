package bypass

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The table, as nft would print it (moat listening on port 25, the bypass
// listener on 10026):
//
//	table inet moat {
//		set white4     { type ipv4_addr; flags timeout; }
//		set whitenets4 { type ipv4_addr; flags interval,timeout; }
//		set white6     { type ipv6_addr; flags timeout; }
//		set whitenets6 { type ipv6_addr; flags interval,timeout; }
//		chain prerouting { type nat hook prerouting priority dstnat;
//			tcp dport 25 fib daddr type local ip saddr @white4 redirect to :10026
//			… the same for @whitenets4, @white6, @whitenets6
//		}
//		chain output { type nat hook output priority -100;
//			… the same four rules, for connections made on this host
//		}
//		chain guard { type filter hook input priority filter;
//			iifname != "lo" tcp dport 10026 ct status & dnat == 0 drop
//		}
//	}
//
// Hosts and networks have sets of their own because an interval set holds
// no overlapping elements, and a white host inside a white network is
// common. fib daddr type local (or moat's own address, when it listens on
// one) keeps connections this host makes to other servers' port 25 out of
// it. The guard keeps the bypass listener, which must accept connections
// on the addresses clients reach (a redirect sends them to the address
// they came in on), from being used by anyone the kernel did not send
// there: a black host could otherwise talk to the mail server directly.
// Connections from this host itself (loopback) are let through: they are
// no client's, and moat's tests and benchmarks use them.

const commentPrefix = "moat bypass: "

// ctStatusDNAT is conntrack's IPS_DST_NAT bit: the connection's
// destination was rewritten (by our redirect).
const ctStatusDNAT = 1 << 5

// layout returns the table's sets and chains.
func (t *Table) layout() ([4]*nftables.Set, [3]*nftables.Chain) {
	set := func(name string, key nftables.SetDatatype, interval bool) *nftables.Set {
		return &nftables.Set{Table: t.tab, Name: name, KeyType: key, HasTimeout: true, Interval: interval}
	}
	sets := [4]*nftables.Set{
		set("white4", nftables.TypeIPAddr, false),
		set("whitenets4", nftables.TypeIPAddr, true),
		set("white6", nftables.TypeIP6Addr, false),
		set("whitenets6", nftables.TypeIP6Addr, true),
	}
	accept := nftables.ChainPolicyAccept
	chains := [3]*nftables.Chain{
		{Name: "prerouting", Table: t.tab, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting,
			Priority: nftables.ChainPriorityNATDest, Policy: &accept},
		{Name: "output", Table: t.tab, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput,
			Priority: nftables.ChainPriorityNATDest, Policy: &accept},
		{Name: "guard", Table: t.tab, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput,
			Priority: nftables.ChainPriorityFilter, Policy: &accept},
	}
	return sets, chains
}

// namedRule is a rule and the comment that names it in the kernel, by
// which Check recognises it.
type namedRule struct {
	rule    *nftables.Rule
	comment string
}

// rules returns the table's rules. Call it after the sets were added in
// the same batch: the rules refer to them by id too.
func (t *Table) rules() []namedRule {
	var out []namedRule
	lport, bport := t.cfg.Listen.Port(), t.cfg.Port
	for _, ch := range t.chain[:2] {
		for i, s := range t.set {
			v4 := i < 2
			if a := t.cfg.Listen.Addr(); !a.IsUnspecified() && a.Unmap().Is4() != v4 {
				continue // moat listens on one address, of the other family
			}
			ex := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(lport)},
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto(v4)}},
			}
			ex = append(ex, t.daddr(v4)...)
			saddrOff, alen := uint32(12), uint32(4)
			if !v4 {
				saddrOff, alen = 8, 16
			}
			ex = append(ex,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: saddrOff, Len: alen},
				&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
				&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(bport)},
				&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
			)
			c := fmt.Sprintf("%sdport %d from @%s to :%d", commentPrefix, lport, s.Name, bport)
			out = append(out, namedRule{rule: &nftables.Rule{Table: t.tab, Chain: ch, Exprs: ex,
				UserData: userdata.AppendString(nil, userdata.TypeComment, c)}, comment: c})
		}
	}
	lo := make([]byte, unix.IFNAMSIZ)
	copy(lo, "lo")
	guard := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: lo},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(bport)},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	c := fmt.Sprintf("%sonly redirected connections reach :%d", commentPrefix, bport)
	out = append(out, namedRule{rule: &nftables.Rule{Table: t.tab, Chain: t.chain[2], Exprs: guard,
		UserData: userdata.AppendString(nil, userdata.TypeComment, c)}, comment: c})
	return out
}

// daddr matches connections to moat: to its address if it listens on one,
// else to any address of this host.
func (t *Table) daddr(v4 bool) []expr.Any {
	a := t.cfg.Listen.Addr().Unmap()
	if a.IsUnspecified() {
		return []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		}
	}
	off := uint32(16)
	if !v4 {
		off = 24
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(a.AsSlice()))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

func nfproto(v4 bool) byte {
	if v4 {
		return unix.NFPROTO_IPV4
	}
	return unix.NFPROTO_IPV6
}

func (t *Table) hostSet(a netip.Addr) *nftables.Set {
	if a.Is4() {
		return t.set[0]
	}
	return t.set[2]
}

func hostElem(a netip.Addr, timeout time.Duration) nftables.SetElement {
	return nftables.SetElement{Key: a.AsSlice(), Timeout: timeout}
}

// netElems is the pair of elements an interval set keeps for p: its first
// address, and the address after its last with the interval-end flag (none
// when p reaches the end of the address space).
func netElems(p netip.Prefix, timeout time.Duration) []nftables.SetElement {
	p = p.Masked()
	out := []nftables.SetElement{{Key: p.Addr().AsSlice(), Timeout: timeout}}
	if next := lastAddr(p).Next(); next.IsValid() {
		out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return out
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func comment(r *nftables.Rule) string {
	c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return c
}

func isOurs(r *nftables.Rule) bool { return strings.HasPrefix(comment(r), commentPrefix) }

// notFound reports the kernel's "no such table, chain, set or element".
func notFound(err error) bool {
	return errors.Is(err, syscall.ENOENT)
}
