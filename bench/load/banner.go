package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// bannerCmd measures the time from connect to a complete banner line
// through addr and through ref, alternating one connection to each, so
// both see the same machine at the same moment. The difference of the
// medians is what the hop through addr adds.
func bannerCmd(args []string) error {
	fs := newFlags("banner")
	addr := fs.String("addr", "", "address under test (e.g. moat in front of the reference)")
	ref := fs.String("ref", "", "reference address (e.g. the backend itself)")
	src := fs.String("src", "127.0.0.1", "source address")
	n := fs.Int("n", 2000, "connections to each")
	fs.Parse(args)
	if *addr == "" || *ref == "" {
		return errors.New("-addr and -ref are required")
	}
	for _, a := range []string{*addr, *ref} {
		if err := checkLoopback(a); err != nil {
			return err
		}
	}
	s, err := netip.ParseAddr(*src)
	if err != nil {
		return err
	}
	var viaAddr, viaRef []time.Duration
	for range *n {
		d, err := probeBanners(s, *ref, 1)
		if err != nil {
			return fmt.Errorf("%s: %w", *ref, err)
		}
		viaRef = append(viaRef, d...)
		d, err = probeBanners(s, *addr, 1)
		if err != nil {
			return fmt.Errorf("%s: %w", *addr, err)
		}
		viaAddr = append(viaAddr, d...)
	}
	fmt.Printf("time to banner, reference %s: %s\n", *ref, summary(viaRef))
	fmt.Printf("time to banner, via       %s: %s\n", *addr, summary(viaAddr))
	add := percentile(viaAddr, 50) - percentile(viaRef, 50)
	fmt.Printf("added p50 %s (target <= 0.300ms); added p99 %s\n", ms(add), ms(percentile(viaAddr, 99)-percentile(viaRef, 99)))
	fmt.Printf("RESULT banner added_p50_ms=%.3f ref_p50_ms=%.3f via_p50_ms=%.3f\n",
		float64(add)/1e6, float64(percentile(viaRef, 50))/1e6, float64(percentile(viaAddr, 50))/1e6)
	return nil
}
