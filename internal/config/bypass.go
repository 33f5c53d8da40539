package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Bypass is the [bypass] table: white hosts reach the mail server's
// bypass listener straight through the kernel, without moat. See
// docs/operations.md, "Kernel bypass".
type Bypass struct {
	Mode  string   `toml:"mode"`  // "off" or "nftables"
	Port  int      `toml:"port"`  // the mail server's bypass listener (no PROXY header), on this host
	Table string   `toml:"table"` // the nftables table moat owns (family inet)
	Sync  Duration `toml:"sync"`  // how often the kernel's sets are checked against the store in full
}

func defaultBypass() Bypass {
	return Bypass{Mode: "off", Table: "moat", Sync: Duration{10 * time.Minute}}
}

// validate checks the bypass keys against moat's listen address, whose
// port the kernel's rule matches.
func (b Bypass) validate(listen string) error {
	switch b.Mode {
	case "off":
		return nil
	case "nftables":
	default:
		return fmt.Errorf("config: bypass.mode: %q: want \"off\" (default) or \"nftables\"", b.Mode)
	}
	if b.Port < 1 || b.Port > 65535 {
		return fmt.Errorf("config: bypass.port: %d: want the port of the mail server's bypass listener (a second smtpd without the PROXY header, e.g. 10026; see docs/operations.md)", b.Port)
	}
	host, port, _ := net.SplitHostPort(listen)
	if strconv.Itoa(b.Port) == port {
		return fmt.Errorf("config: bypass.port: %d is moat's own listen port: want the mail server's bypass listener", b.Port)
	}
	if _, err := b.ListenAddr(listen); err != nil {
		return fmt.Errorf("config: bypass.mode \"nftables\" needs listen as an IP address and port (or \":%s\" for every address), not %q: the kernel's rule matches it", port, host)
	}
	if b.Table == "" || len(b.Table) > 64 {
		return fmt.Errorf("config: bypass.table: %q: want a name of 1 to 64 letters, digits, \"_\" or \"-\" (default \"moat\")", b.Table)
	}
	for _, c := range b.Table {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("config: bypass.table: %q: want a name of letters, digits, \"_\" or \"-\" (default \"moat\")", b.Table)
		}
	}
	if b.Sync.Duration < 10*time.Second {
		return fmt.Errorf("config: bypass.sync: %s: want at least \"10s\" (default \"10m\")", b.Sync)
	}
	return nil
}

// ListenAddr is moat's listen address as the kernel's rule matches it: an
// empty host is the unspecified address (every address of this host).
func (b Bypass) ListenAddr(listen string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return netip.AddrPort{}, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a := netip.IPv6Unspecified()
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, err
		}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(n)), nil
}
