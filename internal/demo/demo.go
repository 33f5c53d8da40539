// Package demo runs moat on loopback with everything it needs and traffic
// to show what it does: "moat demo". No mail server, no DNS, no port below
// 1024: a small recording backend stands in for the mail server (Backend),
// a generator plays legitimate senders and several kinds of bots from
// 127.x addresses (Traffic), and the timers are short enough that a minute
// tells the story on the dashboard, in "moat status" and in
// "moat hosts list".
//
// Everything the demo makes lives in one temporary directory (the store,
// the admin socket and token, the configuration, moat's log), which Stop
// removes. It never sends a packet off loopback.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"moat/internal/config"
	"moat/internal/daemon"
)

// Domain is the demo's mail domain; its users are alice, bob, carol and
// postmaster.
const Domain = "demo.moat.test"

// MinRetry is the demo's greylist min_retry; the legitimate senders retry
// a little after it.
const MinRetry = 5 * time.Second

// Options set up a demo.
type Options struct {
	// Story hears of every event of the traffic generator; nil: none.
	Story func(Event)
	// Log gets moat's log (text); nil: the file moat.log in the demo's
	// directory.
	Log io.Writer
	// NoTraffic starts moat and the backend only, for a test that makes
	// traffic of its own.
	NoTraffic bool
}

// Demo is a running demo.
type Demo struct {
	Dir          string // the temporary directory; removed by Stop
	ConfigPath   string // its moat.toml, for "moat -c … status"
	DashboardURL string // with the admin token in the fragment
	SMTPAddr     string // where moat listens
	Daemon       *daemon.Daemon
	Backend      *Backend
	Traffic      *Traffic

	stop    context.CancelFunc
	runErr  chan error
	logFile *os.File
	once    sync.Once
}

// Start makes the directory, starts the backend, moat and the traffic,
// and returns once moat accepts connections.
func Start(ctx context.Context, o Options) (d *Demo, err error) {
	dir, err := os.MkdirTemp("", "moat-demo-")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	d = &Demo{Dir: dir, ConfigPath: filepath.Join(dir, "moat.toml"), runErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			d.Stop()
		}
	}()
	if d.Backend, err = startBackend([]string{"alice@" + Domain, "bob@" + Domain, "carol@" + Domain, "postmaster@" + Domain}); err != nil {
		return d, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return d, err
	}
	smtpAddr, adminAddr, baitAddr := ports[0], ports[1], ports[2]
	token := make([]byte, 32)
	rand.Read(token)
	tokenHex := hex.EncodeToString(token)
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(tokenHex+"\n"), 0o600); err != nil {
		return d, fmt.Errorf("demo: %w", err)
	}
	trap := "trap@" + Domain
	if err := os.WriteFile(d.ConfigPath, []byte(configText(dir, smtpAddr, adminAddr, baitAddr, d.Backend.Addr(), trap)), 0o600); err != nil {
		return d, fmt.Errorf("demo: %w", err)
	}
	cfg, err := config.Load(d.ConfigPath)
	if err != nil {
		return d, err
	}
	logw := o.Log
	if logw == nil {
		if d.logFile, err = os.Create(filepath.Join(dir, "moat.log")); err != nil {
			return d, fmt.Errorf("demo: %w", err)
		}
		logw = d.logFile
	}
	log := slog.New(slog.NewTextHandler(logw, nil))
	if d.Daemon, err = daemon.New(cfg, log); err != nil {
		return d, err
	}
	d.Daemon.ConfigPath = d.ConfigPath
	runCtx, stop := context.WithCancel(ctx)
	d.stop = stop
	go func() { d.runErr <- d.Daemon.Run(runCtx) }()
	if err := waitListening(smtpAddr, d.runErr); err != nil {
		return d, err
	}
	d.DashboardURL = "http://" + adminAddr + "/dashboard/#token=" + tokenHex
	d.SMTPAddr = smtpAddr
	d.Traffic = &Traffic{smtp: smtpAddr, bait: baitAddr, domain: Domain, retry: MinRetry + 1500*time.Millisecond, trap: trap, report: o.Story}
	if !o.NoTraffic {
		d.Traffic.run(runCtx)
	}
	return d, nil
}

// configText is the demo's moat.toml: short timers, everything on
// loopback, no DNS.
func configText(dir, smtpAddr, adminAddr, baitAddr, backend, trap string) string {
	return fmt.Sprintf(`# moat demo: short timers so that a minute tells the story.
listen = %q
hostname = "mx.%s"
backend = %q
data_dir = %q
black_ttl = "1h"

[greylist]
greet_delay = "1s"       # bots that talk before the banner are caught
min_retry = %q           # a retry after this passes
retry_window = "10m"
white_ttl = "1h"

[tarpit]
stutter = "200ms"        # one byte every 200 ms
max_duration = "30s"
idle_timeout = "20s"

[traps]
addresses = [%q]

[bait]
listen = %q
domain = "bait.%s"

[admin]
listen = %q
token_file = %q

[metrics]
chart_step = "5s"

[reputation]
spf_pools = false        # no DNS in the demo
`, smtpAddr, Domain, backend, dir, MinRetry.String(), trap, baitAddr, Domain, adminAddr, filepath.Join(dir, "admin.token"))
}

// freePorts returns n loopback addresses with ports nobody listens on
// now.
func freePorts(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// waitListening returns once addr accepts connections, or with the
// daemon's error if it stopped first.
func waitListening(addr string, runErr <-chan error) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-runErr:
			return fmt.Errorf("demo: moat stopped at start: %w", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("demo: moat did not start listening within 20s")
}

// Stop stops the traffic and moat, and removes everything the demo made.
func (d *Demo) Stop() error {
	var err error
	d.once.Do(func() {
		if d.stop != nil {
			d.stop()
			err = <-d.runErr
		}
		if d.Traffic != nil {
			d.Traffic.wg.Wait()
		}
		if d.Daemon != nil {
			err = errors.Join(err, d.Daemon.Close())
		}
		if d.Backend != nil {
			d.Backend.Close()
		}
		if d.logFile != nil {
			d.logFile.Close()
		}
		err = errors.Join(err, os.RemoveAll(d.Dir))
	})
	return err
}
