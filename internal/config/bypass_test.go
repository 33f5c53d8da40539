package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestBypassDefaultsOff(t *testing.T) {
	b := Default().Bypass
	if b != (Bypass{Mode: "off", Table: "moat", Sync: Duration{10 * time.Minute}}) {
		t.Errorf("default [bypass] = %+v", b)
	}
}

func TestBypassParse(t *testing.T) {
	c, err := Parse([]byte("listen = \":25\"\n[bypass]\nmode = \"nftables\"\nport = 10026\ntable = \"moat-mx1\"\nsync = \"1m\""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bypass != (Bypass{Mode: "nftables", Port: 10026, Table: "moat-mx1", Sync: Duration{time.Minute}}) {
		t.Errorf("[bypass] = %+v", c.Bypass)
	}
	ap, err := c.Bypass.ListenAddr(c.Listen)
	if err != nil || ap != netip.AddrPortFrom(netip.IPv6Unspecified(), 25) {
		t.Errorf("ListenAddr(%q) = %v, %v: want every address, port 25", c.Listen, ap, err)
	}
}

func TestBypassErrors(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		want       []string
	}{
		{"unknown mode", "[bypass]\nmode = \"pf\"", []string{"bypass.mode", `"pf"`, "nftables"}},
		{"no port", "[bypass]\nmode = \"nftables\"", []string{"bypass.port", "bypass listener"}},
		{"moat's own port", "listen = \":25\"\n[bypass]\nmode = \"nftables\"\nport = 25", []string{"bypass.port", "moat's own listen port"}},
		{"listen by name", "listen = \"localhost:2525\"\n[bypass]\nmode = \"nftables\"\nport = 10026", []string{"listen", "IP address", `"localhost"`}},
		{"table name", "[bypass]\nmode = \"nftables\"\nport = 10026\ntable = \"a b\"", []string{"bypass.table", `"a b"`}},
		{"sync too short", "[bypass]\nmode = \"nftables\"\nport = 10026\nsync = \"1s\"", []string{"bypass.sync", "10s"}},
		{"sync not a duration", "[bypass]\nsync = \"often\"", []string{"bypass.sync", "not a duration"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text))
			if err == nil {
				t.Fatalf("Parse(%q) passed", tt.text)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
