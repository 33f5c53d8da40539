// Package dashboard drives moat's dashboard in a real browser: headless
// Chromium (Debian's chromium package) through the DevTools protocol
// (chromedp). Its test loads the page against a running moat; its
// screenshot command (./screenshot) takes the picture in docs/.
package dashboard

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"github.com/chromedp/chromedp"
)

// Browser starts a headless Chromium with a fresh profile in dir and
// returns a context to drive a tab with; cancel ends the browser. It
// looks for "chromium" (Debian) then "chromium-browser" on PATH.
func Browser(ctx context.Context, dir string, width, height int) (context.Context, context.CancelFunc, error) {
	path := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return nil, nil, fmt.Errorf("chromium not found on PATH: install Debian's chromium package (apt-get install chromium); test/run.sh does")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	// Flags that keep a headless Chromium quiet and local: no sandbox
	// (root in a container), no GPU, and none of the background
	// requests (updates, sync, QUIC probes) a browser makes on its own.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dir),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(width, height),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tctx, cancelTab := chromedp.NewContext(actx)
	// Start the browser now, so that a missing library shows here.
	if err := chromedp.Do(tctx); err != nil {
		cancelTab()
		cancelAlloc()
		return nil, nil, fmt.Errorf("starting %s: %w", path, err)
	}
	return tctx, func() { cancelTab(); cancelAlloc() }, nil
}
