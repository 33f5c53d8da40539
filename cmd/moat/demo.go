package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"moat/internal/demo"
)

// demoCmd is "moat demo": moat on loopback with a built-in backend and
// traffic, until Ctrl-C.
func demoCmd() *cobra.Command {
	var (
		quiet   bool
		showLog bool
		runFor  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "run moat on loopback with a built-in mail server and simulated senders and bots; Ctrl-C stops it",
		Long: `moat demo starts moat on loopback with a small built-in mail server behind it and a traffic
generator in front: legitimate mail servers that retry like real ones, bots that never come back,
bots that retry too soon, early talkers, trap hitters and a harvester that fetches the bait page.
The timers are short, so within a minute the dashboard, "moat status" and "moat hosts list" tell
the story. No mail server, no DNS and no privileges are needed; nothing leaves loopback.
Ctrl-C stops everything and removes what the demo made.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if runFor > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, runFor)
				defer cancel()
			}
			out := c.OutOrStdout()
			var mu sync.Mutex // the story and the summaries share out
			o := demo.Options{}
			if !quiet {
				o.Story = func(e demo.Event) {
					mu.Lock()
					fmt.Fprintln(out, e)
					mu.Unlock()
				}
			}
			if showLog {
				o.Log = c.ErrOrStderr()
			}
			d, err := demo.Start(ctx, o)
			if err != nil {
				return err
			}
			mu.Lock()
			fmt.Fprintf(out, `moat demo is running (Ctrl-C stops it and removes %s)

  dashboard:  %s
  status:     moat -c %s status
  hosts:      moat -c %s hosts list
  log:        %s

`, d.Dir, d.DashboardURL, d.ConfigPath, d.ConfigPath, logWhere(d, showLog))
			mu.Unlock()
			tick := time.NewTicker(10 * time.Second)
			defer tick.Stop()
			for done := false; !done; {
				select {
				case <-ctx.Done():
					done = true
				case <-tick.C:
					mu.Lock()
					summary(out, d)
					mu.Unlock()
				}
			}
			mu.Lock()
			summary(out, d)
			mu.Unlock()
			if err := d.Stop(); err != nil {
				return err
			}
			fmt.Fprintf(out, "moat demo stopped; %s removed\n", d.Dir)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "do not print what each simulated sender does")
	cmd.Flags().BoolVar(&showLog, "log", false, "write moat's log to standard error instead of a file in the demo's directory")
	cmd.Flags().DurationVar(&runFor, "for", 0, "stop by itself after this long (e.g. 60s); 0: run until Ctrl-C")
	return cmd
}

func logWhere(d *demo.Demo, onStderr bool) string {
	if onStderr {
		return "standard error"
	}
	return d.Dir + "/moat.log"
}

// summary prints one line of figures.
func summary(w io.Writer, d *demo.Demo) {
	st, err := d.Daemon.Admin.Status()
	if err != nil {
		fmt.Fprintf(w, "-- status: %v\n", err)
		return
	}
	fmt.Fprintf(w, "-- hosts: %d white, %d grey, %d black; tarpit holds %d, %.0f bot-seconds wasted; backend got %d messages (%d legitimate sent)\n",
		st.Hosts["white"], st.Hosts["grey"], st.Hosts["black"], st.TarpitHeld, st.TarpitSeconds,
		len(d.Backend.Messages()), d.Traffic.Delivered())
}
