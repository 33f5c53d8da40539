package store

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClassNames(t *testing.T) {
	for _, c := range []Class{Grey, White, Black} {
		got, err := ParseClass(strings.ToUpper(c.String()))
		if err != nil || got != c {
			t.Errorf("ParseClass(%q) = %v, %v", c, got, err)
		}
	}
	if c, err := ParseClass("gray"); err != nil || c != Grey {
		t.Errorf("ParseClass(gray) = %v, %v", c, err)
	}
	if _, err := ParseClass("purple"); err == nil || !strings.Contains(err.Error(), `"purple"`) {
		t.Errorf("ParseClass(purple): %v, want an error naming it", err)
	}
	if s := Class(7).String(); s != "class(7)" {
		t.Errorf("Class(7) = %q", s)
	}
}

// Every source survives the class byte both stores write, with every
// class, and reads back by name.
func TestSourcePacksWithClass(t *testing.T) {
	for s := SourceUnknown; s < numSources; s++ {
		for _, c := range []Class{Grey, White, Black} {
			gc, gs := UnpackClass(PackClass(c, s))
			if gc != c || gs != s {
				t.Errorf("PackClass(%v, %v) reads back as %v, %v", c, s, gc, gs)
			}
		}
		got, err := ParseSource(s.String())
		if err != nil || got != s {
			t.Errorf("ParseSource(%q) = %v, %v", s, got, err)
		}
	}
	// A byte written before sources existed is the class alone.
	if c, s := UnpackClass(byte(Black)); c != Black || s != SourceUnknown {
		t.Errorf("an old class byte reads as %v, %v", c, s)
	}
	if s, err := ParseSource(""); err != nil || s != SourceUnknown {
		t.Errorf("ParseSource(\"\") = %v, %v", s, err)
	}
	if _, err := ParseSource("rumour"); err == nil {
		t.Error("ParseSource(rumour): no error")
	}
	if numSources > 16 {
		t.Errorf("%d sources do not fit in the class byte's four high bits", numSources)
	}
}

func TestTripletID(t *testing.T) {
	net := netip.MustParsePrefix("192.0.2.0/24")
	a := Triplet{Net: net, Sender: "ab", Rcpt: "c"}
	b := Triplet{Net: net, Sender: "a", Rcpt: "bc"}
	if a.ID() == b.ID() {
		t.Error("<ab> <c> and <a> <bc> share an ID")
	}
	// One spelling of a network: host bits and IPv4-mapped forms do not matter.
	c := Triplet{Net: netip.MustParsePrefix("::ffff:192.0.2.77/120"), Sender: "ab", Rcpt: "c"}
	if a.ID() != c.ID() {
		t.Error("the same network spelt two ways has two IDs")
	}
	id, err := ParseTripletID(a.ID().String())
	if err != nil || id != a.ID() {
		t.Errorf("ParseTripletID(String()) = %v, %v", id, err)
	}
	for _, bad := range []string{"", "zz", strings.Repeat("a", 31), strings.Repeat("a", 34)} {
		if _, err := ParseTripletID(bad); err == nil {
			t.Errorf("ParseTripletID(%q): no error", bad)
		}
	}
}

func TestUnixNanos(t *testing.T) {
	now := time.Unix(1700000000, 123)
	if got := FromUnixNanos(UnixNanos(now)); !got.Equal(now) {
		t.Errorf("round trip of %v gives %v", now, got)
	}
	if UnixNanos(time.Time{}) != 0 || !FromUnixNanos(0).IsZero() {
		t.Error("the zero time is not 0")
	}
	if got := UnixNanos(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); got != math.MaxInt64 {
		t.Errorf("year 3000 = %d, want clamped to MaxInt64", got)
	}
	if got := UnixNanos(time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)); got != math.MinInt64+1 {
		t.Errorf("year 1000 = %d, want clamped", got)
	}
}

func TestCheckTally(t *testing.T) {
	if err := CheckTally("net:192.0.2.0/24", "192.0.2.1", time.Hour, 100); err != nil {
		t.Errorf("a good tally: %v", err)
	}
	for name, err := range map[string]error{
		"empty key":     CheckTally("", "m", time.Hour, 1),
		"empty member":  CheckTally("k", "", time.Hour, 1),
		"no window":     CheckTally("k", "m", 0, 1),
		"no size limit": CheckTally("k", "m", time.Hour, 0),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
