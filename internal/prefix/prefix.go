// Package prefix gives client addresses and networks one spelling, so that
// the config, the operator's commands, the stores and the evidence that
// folds hosts into networks all name the same host the same way.
//
// An IPv4 client reaching an IPv6 socket arrives as ::ffff:192.0.2.1; a
// prefix written by an operator may carry host bits ("192.0.2.7/24"). Left
// as they are, each would be a different map key from the entry it means,
// and a whitelist or a black network would silently miss. Every prefix moat
// keeps or compares goes through Norm, Host or Fold first.
//
// The package imports only the standard library: config, admin and the
// stores all use it, and it must never pull anything in after it.
package prefix

import (
	"fmt"
	"net/netip"
	"strings"
)

// Parse reads an address or a CIDR as an operator writes it in the config
// or on the command line. A single address is the host (/32 or /128); a
// CIDR is masked, so "192.0.2.7/24" means 192.0.2.0/24; IPv4-mapped IPv6
// forms are read as the IPv4 address or network they map.
func Parse(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return Host(a), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	// Norm would keep such a prefix as the IPv6 network it is, which
	// contains no IPv4 client moat ever sees: an entry that matches nothing.
	if p.Addr().Is4In6() && p.Bits() < 96 {
		return netip.Prefix{}, fmt.Errorf("%s: an IPv4-mapped prefix shorter than /96 names no IPv4 network", s)
	}
	return Norm(p), nil
}

// Norm gives every prefix one spelling: host bits cleared, no zone, and
// IPv4-mapped IPv6 prefixes turned into IPv4 ones, so that
// ::ffff:192.0.2.1/128 and 192.0.2.1/32 are the same host. An invalid
// prefix is returned as it is.
func Norm(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked()
}

// Host returns the single-address prefix of a (/32 or /128), with an
// IPv4-mapped IPv6 address unmapped first.
func Host(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

// Fold returns the network of a: its first v4 bits for an IPv4 address
// (mapped or not), its first v6 bits for an IPv6 one. It is how the
// greylist folds a client to its sending network and how evidence against
// several hosts adds up to their network.
func Fold(a netip.Addr, v4, v6 int) netip.Prefix {
	a = a.Unmap()
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, _ := a.Prefix(bits)
	return p
}
