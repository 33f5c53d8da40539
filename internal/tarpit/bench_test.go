package tarpit

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// BenchmarkHold1000 measures the Go heap a held connection costs. It holds
// 1000 loopback connections stuttering their banner at 1 byte/s and reports
//
//	conn-B/held:   the accepted *net.TCPConn itself (the server pays it anyway)
//	tarpit-B/held: what Hold adds on top (session, wheel and table slots)
//
// The runtime's poll descriptor and the kernel's socket buffers are outside
// the Go heap; the RSS budget is measured end to end under bench/.
func BenchmarkHold1000(b *testing.B) {
	const n = 1000
	tp, err := New(Config{Hostname: testHost, Stutter: time.Second, MaxConns: n}, Events{})
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client := netip.MustParseAddr("127.0.0.1")

	var connB, tarpitB float64
	for b.Loop() {
		// Dial first: the kernel completes the handshakes into the
		// backlog, so accepting afterwards measures only the server side.
		dialed := make([]net.Conn, n)
		for i := range dialed {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			dialed[i] = c
		}
		m0 := heap()
		accepted := make([]net.Conn, n)
		for i := range accepted {
			c, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			accepted[i] = c
		}
		m1 := heap()
		for _, c := range accepted {
			if !tp.Hold(c, client, Start{}) {
				b.Fatal("Hold refused")
			}
		}
		clear(accepted) // the tarpit holds them now
		time.Sleep(50 * time.Millisecond)
		m2 := heap()
		connB = float64(m1-m0) / n
		tarpitB = float64(m2-m1) / n

		for _, c := range dialed {
			c.Close()
		}
		for tp.Stats().Held > 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.ReportMetric(connB, "conn-B/held")
	b.ReportMetric(tarpitB, "tarpit-B/held")
}

func heap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
