package ledger

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// The time black hosts spent in the tarpit: each host's own total (what
// "moat hosts list" and the dashboard's top hosts show), the grand total
// and the day's (the dashboard's "today"). It is what a verdict cost the
// host, kept beside what its messages were told.

// HeldKind is the store record kind of a host's seconds in the tarpit,
// keyed by its address; the value is 8 bytes, big-endian.
const HeldKind = "held"

// HeldTTL is how long moat remembers how many seconds a host spent in the
// tarpit after its last held session.
const HeldTTL = 30 * 24 * time.Hour

// HeldCounter is the store counter of all the seconds held.
const HeldCounter = "tarpit_seconds"

// HeldDayCounter names the counter of the tarpit seconds of the day t is
// in, in local time: "tarpit_seconds_day:2025-03-01". One counter a day
// adds up to a few hundred small keys a year.
func HeldDayCounter(t time.Time) string {
	return HeldCounter + "_day:" + t.Local().Format(time.DateOnly)
}

// Held adds the time a host spent in the tarpit to its own total, to the
// grand total and to the day's.
func (l *Ledger) Held(client netip.Addr, d time.Duration) error {
	secs := int64(d.Round(time.Second) / time.Second)
	now := l.cfg.Clock.Now()
	if err := l.st.Add(HeldCounter, secs); err != nil {
		return err
	}
	if err := l.st.Add(HeldDayCounter(now), secs); err != nil {
		return err
	}
	key := client.Unmap().String()
	l.mu.Lock()
	defer l.mu.Unlock()
	var total int64
	if b, ok, err := l.st.Get(HeldKind, key); err != nil {
		return err
	} else if ok && len(b) == 8 {
		total = int64(binary.BigEndian.Uint64(b))
	}
	total += secs
	return l.st.Put(HeldKind, key, binary.BigEndian.AppendUint64(nil, uint64(total)), now.Add(HeldTTL))
}

// EachHeld calls fn with every host's seconds in the tarpit, until fn
// returns false.
func (l *Ledger) EachHeld(fn func(client netip.Addr, secs int64) bool) error {
	return l.st.Scan(HeldKind, func(k string, b []byte) bool {
		a, err := netip.ParseAddr(k)
		if err != nil || len(b) != 8 {
			return true
		}
		return fn(a, int64(binary.BigEndian.Uint64(b)))
	})
}

// HeldSeconds returns the seconds a host spent in the tarpit in the last
// HeldTTL; 0 when the store cannot say.
func (l *Ledger) HeldSeconds(client netip.Addr) int64 {
	b, ok, err := l.st.Get(HeldKind, client.Unmap().String())
	if err != nil || !ok || len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}
