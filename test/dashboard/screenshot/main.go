// Command screenshot takes the dashboard's picture in docs/: it runs
// "moat demo" in-process for a while, opens the dashboard in headless
// Chromium and saves a PNG.
//
//	go run ./test/dashboard/screenshot -o docs/dashboard.png -for 75s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/chromedp/chromedp"

	"moat/internal/demo"
	"moat/test/dashboard"
)

func main() {
	out := flag.String("o", "docs/dashboard.png", "PNG file to write")
	runFor := flag.Duration("for", 75*time.Second, "how long the demo's traffic runs before the picture")
	flag.Parse()
	if err := shoot(*out, *runFor); err != nil {
		fmt.Fprintln(os.Stderr, "screenshot:", err)
		os.Exit(1)
	}
}

func shoot(out string, runFor time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := demo.Start(ctx, demo.Options{Log: io.Discard})
	if err != nil {
		return err
	}
	defer d.Stop()
	// A host looked up, as an operator would after a trap hit.
	time.Sleep(runFor)
	profile, err := os.MkdirTemp("", "moat-shot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	bctx, stop, err := dashboard.Browser(ctx, profile, 1280, 1500)
	if err != nil {
		return err
	}
	defer stop()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(d.DashboardURL),
		chromedp.WaitVisible(chromedp.CSS("#legend li")),
		chromedp.SendKeys(chromedp.CSS("#lookup-ip"), "127.5.0.1"),
		chromedp.Click(chromedp.CSS("#lookup-go")),
		chromedp.WaitVisible(chromedp.CSS("#host-history td")),
	); err != nil {
		return err
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(out, png, 0o644)
}
