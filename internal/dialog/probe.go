package dialog

import (
	"context"
	"fmt"
	"net"
	"time"

	"moat/internal/clock"
	"moat/internal/smtp"
)

// ProbeEvery is how often Watch reads the backend's EHLO. Hand-offs read
// it too, so a busy moat hears of a change sooner.
const ProbeEvery = 10 * time.Minute

// The probe presents itself to the backend as coming from loopback, as
// the trap prober does: every backend behind moat must accept moat's own
// connections.
var (
	probeRemote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0}
	probeLocal  = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25}
)

// Probe reads the backend's EHLO and sets what moat offers from it (see
// smtp.Words.Learn). It returns the backend's extensions and whether the
// offer changed.
func Probe(ctx context.Context, cfg *Config, be Backend) (smtp.Extensions, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.BackendTimeout)
	defer cancel()
	b, banner, err := connect(ctx, be, cfg.BackendTimeout, probeRemote, probeLocal, nil)
	if err != nil {
		return smtp.Extensions{}, false, err
	}
	defer b.c.Close()
	if banner.Code != 220 {
		return smtp.Extensions{}, false, fmt.Errorf("banner: %s", banner.OneLine())
	}
	r, err := b.greet(cfg.Words.Host(), true)
	if err != nil {
		return smtp.Extensions{}, false, err
	}
	b.cmd("QUIT")
	if r.Code != 250 {
		return smtp.Extensions{}, false, fmt.Errorf("EHLO: %s", r.OneLine())
	}
	ext := smtp.ParseEHLO(r)
	return ext, cfg.Words.Learn(ext), nil
}

// Watch probes the backend every ProbeEvery until ctx is done, telling
// report of each result (changed: moat's offer changed). The first probe,
// at start, is the caller's.
func Watch(ctx context.Context, cfg *Config, be Backend, report func(ext smtp.Extensions, changed bool, err error)) {
	clock.Every(ctx, ProbeEvery, func() {
		ext, changed, err := Probe(ctx, cfg, be)
		report(ext, changed, err)
	})
}
