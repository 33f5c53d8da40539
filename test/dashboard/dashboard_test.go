package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"moat/internal/demo"
	"moat/internal/ledger"
	"moat/internal/store"
)

// hostile is what a bot may call itself: markup that would run or draw
// if the page ever wrote it as HTML.
const (
	hostileHelo   = `<img src=x id=injected-helo onerror="document.title='pwned'">`
	hostileSender = `"<script>document.title='pwned'</script><b id=injected-sender>x</b>"@evil.example`
)

// TestDashboardInBrowser loads the dashboard in headless Chromium against
// a running moat and checks what an operator sees: the sessions the test
// just made in the chart, a hostile HELO and sender shown as text, a host
// made black with a button, and a page of another site unable to do the
// same.
func TestDashboardInBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := demo.Start(ctx, demo.Options{NoTraffic: true, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()

	// Sessions: four first attempts (greylisted), one trap hit from a
	// host with a hostile name and sender.
	const greylisted = 4
	for i := range greylisted {
		src := netip.AddrFrom4([4]byte{127, 9, 0, byte(i + 1)})
		code, err := d.Traffic.Send(ctx, src, "mail.example.com", fmt.Sprintf("s%d@example.com", i), []string{"alice@" + demo.Domain})
		if code != 451 {
			t.Fatalf("session %d: %d %v, want greylisted (451)", i, code, err)
		}
	}
	trapper := netip.MustParseAddr("127.9.1.1")
	d.Traffic.Send(ctx, trapper, hostileHelo, hostileSender, []string{"trap@" + demo.Domain})
	waitFor(t, func() bool { return len(d.Daemon.Metrics.Traps.Recent()) == 1 }, "the trap hit to be counted")

	bctx, stop, err := Browser(ctx, t.TempDir(), 1280, 1400)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := chromedp.Do(bctx, chromedp.Navigate(d.DashboardURL)); err != nil {
		t.Fatal(err)
	}

	// The chart shows the greylisted sessions: in its legend and in its
	// bars.
	total := poll[float64](t, bctx, `(() => {
		const li = document.querySelector('#legend li[data-series="grey greylisted"]');
		return li && Number(li.dataset.total);
	})()`)
	if total != greylisted {
		t.Errorf("legend counts %v greylisted sessions, want %d", total, greylisted)
	}
	bars := eval[float64](t, bctx, `[...document.querySelectorAll('#chart rect[data-series="grey greylisted"]')]
		.reduce((n, r) => n + Number(r.dataset.count), 0)`)
	if bars != greylisted {
		t.Errorf("chart bars add up to %v greylisted sessions, want %d", bars, greylisted)
	}
	if n := eval[float64](t, bctx, `[...document.querySelectorAll('#chart rect[data-series="grey trap"]')].length`); n == 0 {
		t.Error("the trap session is not in the chart")
	}
	// The token left the address bar at once.
	if u := eval[string](t, bctx, `location.href`); strings.Contains(u, "token") {
		t.Errorf("the token is still in the address: %s", u)
	}

	// The hostile HELO and sender are there as text, and nothing of them
	// became an element or ran.
	row := poll[string](t, bctx, `(() => { const r = document.querySelector('#trap-hits tbody tr'); return r && r.textContent.includes('127.9.1.1') && r.textContent; })()`)
	if !strings.Contains(row, hostileHelo) || !strings.Contains(row, `<script>document.title='pwned'</script>`) {
		t.Errorf("trap hit row %q does not show the HELO and sender as sent", row)
	}
	injected := eval[bool](t, bctx, `!!(document.getElementById('injected-helo') || document.getElementById('injected-sender') ||
		document.querySelector('#trap-hits img, #trap-hits script, #trap-hits b'))`)
	if injected || eval[string](t, bctx, `document.title`) != "moat" {
		t.Error("markup from the client became part of the page")
	}

	// The host lookup shows what "moat hosts show" shows; the button
	// makes the host black, and the page says so.
	grey := "127.9.0.1"
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS("#lookup-ip"), grey),
		chromedp.Click(chromedp.CSS("#lookup-go")),
	); err != nil {
		t.Fatal(err)
	}
	if c := poll[string](t, bctx, `(() => { const e = document.getElementById('host-ip'); return e.textContent === '127.9.0.1' && document.getElementById('host-class').textContent; })()`); c != "grey" {
		t.Errorf("lookup of %s says %q, want grey", grey, c)
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#make-black"))); err != nil {
		t.Fatal(err)
	}
	if c := poll[string](t, bctx, `(() => { const c = document.getElementById('host-class').textContent; return c !== 'grey' && c; })()`); c != "black" {
		t.Errorf("after the button the page says %q, want black", c)
	}
	if h := stored(t, d, grey); h.Class != store.Black || h.Reason != "operator" {
		t.Errorf("the store has %s as %v (%s), want black by the operator", grey, h.Class, h.Reason)
	}
	history := eval[string](t, bctx, `document.getElementById('host-history').textContent`)
	if !strings.Contains(history, "operator") {
		t.Errorf("the host's history on the page %q lacks the operator's change", history)
	}

	// A black host's sessions in the tarpit: what its message was told,
	// and the envelope as the client wrote it, shown as text.
	held := netip.MustParseAddr("127.9.0.3")
	key := new(int)
	d.Daemon.Ledger.Mail(key, hostileSender)
	d.Daemon.Ledger.Rcpt(key, "alice@"+demo.Domain)
	d.Daemon.Ledger.Told(key, ledger.Deferred)
	if err := d.Daemon.Ledger.Record(key, held); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx,
		chromedp.SetValue(chromedp.CSS("#lookup-ip"), held.String()),
		chromedp.Click(chromedp.CSS("#lookup-go")),
	); err != nil {
		t.Fatal(err)
	}
	msg := poll[string](t, bctx, `(() => { const r = document.querySelector('#host-messages tbody tr');
		return !document.getElementById('host-told').hidden && r && r.textContent.includes('deferred') && r.textContent; })()`)
	if !strings.Contains(msg, `<script>document.title='pwned'</script>`) || !strings.Contains(msg, "alice@"+demo.Domain) {
		t.Errorf("the tarpit's record on the page %q lacks the envelope as sent", msg)
	}
	if c := eval[string](t, bctx, `document.getElementById('host-told-counts').textContent`); c != "dropped 0, deferred 1, refused 0" {
		t.Errorf("the record's counts on the page %q", c)
	}
	if eval[bool](t, bctx, `!!document.querySelector('#host-messages script, #host-messages b')`) || eval[string](t, bctx, `document.title`) != "moat" {
		t.Error("markup from the client's envelope became part of the page")
	}

	// In enforce mode the observe card is hidden; the tarpit's message
	// counts are shown. An operator switches to observe mode by reload
	// while the page is open: the page says so, and a first-time sender's
	// session (delivered, not greylisted) is counted by what enforce mode
	// would have done.
	if eval[bool](t, bctx, `!document.getElementById('observe').hidden`) {
		t.Error("the observe card shows in enforce mode")
	}
	if m := eval[string](t, bctx, `document.getElementById('tarpit-messages').textContent`); !strings.Contains(m, "deferred 0") {
		t.Errorf("tarpit message counts %q, want deferred 0", m)
	}
	observe(t, d)
	if code, err := d.Traffic.Send(ctx, netip.MustParseAddr("127.9.0.9"), "mail.example.net", "first@example.net", []string{"alice@" + demo.Domain}); code != 250 {
		t.Fatalf("a first-time sender in observe mode: %d %v, want delivered (250)", code, err)
	}
	would := poll[string](t, bctx, `(() => { const c = document.getElementById('observe');
		return !c.hidden && document.getElementById('would').textContent.includes('greylisted') && document.getElementById('would').textContent; })()`)
	if !strings.Contains(would, "greylisted1") {
		t.Errorf("the observe card says %q, want one session enforce mode would have greylisted", would)
	}
	if st := eval[string](t, bctx, `document.getElementById('state').textContent`); st != "running in observe mode" {
		t.Errorf("the state says %q in observe mode", st)
	}

	// A page of another site that tries the same gets nowhere: a form
	// posts without the token, a script cannot send it, and the browser
	// tells where both come from.
	target := "127.9.0.2"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>evil</title>
<form id=f method=post action="%[1]s/v1/hosts" enctype="text/plain"><input name='{"ip":"%[2]s","class":"white","x":"' value='"}'></form>
<script>
fetch("%[1]s/v1/hosts", {method: "POST", mode: "no-cors", body: JSON.stringify({ip: "%[2]s", class: "white"})})
  .finally(() => fetch("%[1]s/v1/hosts", {method: "POST", headers: {Authorization: "Bearer " + "guess"}, body: "{}"}).catch(() => {}))
  .finally(() => { document.title = "sent"; document.getElementById("f").submit(); });
</script>`, adminBase(t, d), target)
	}))
	defer evil.Close()
	if err := chromedp.Do(bctx, chromedp.Navigate(evil.URL)); err != nil {
		t.Fatal(err)
	}
	// The form's submission is a navigation to the admin listener: the
	// page that comes back is moat's refusal. (The page is replaced
	// meanwhile, so an evaluation may meet none.)
	var refusal string
	waitFor(t, func() bool {
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href.includes('/v1/hosts') ? document.body.textContent : ''`))
		refusal = v
		return err == nil && v != ""
	}, "the other site's form to reach the admin listener")
	if strings.Contains(refusal, "stored") || strings.Contains(refusal, target) {
		t.Errorf("the admin listener answered the other site's form with %q", refusal)
	}
	if h, ok := lookup(t, d, target); ok && h.Class == store.White {
		t.Errorf("a page of another site made %s white", target)
	}
}

// observe puts the demo's moat in observe mode by a reload, as an
// operator would: mode = "observe" at the top of its configuration.
func observe(t *testing.T, d *demo.Demo) {
	t.Helper()
	b, err := os.ReadFile(d.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.ConfigPath, append([]byte("mode = \"observe\"\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Daemon.Reload(); err != nil || !slices.Contains(res.Applied, "mode") {
		t.Fatalf("reload to observe mode: %+v %v", res, err)
	}
}

// adminBase is the admin listener's origin.
func adminBase(t *testing.T, d *demo.Demo) string {
	u, err := url.Parse(d.DashboardURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Scheme + "://" + u.Host
}

func lookup(t *testing.T, d *demo.Demo, ip string) (store.Host, bool) {
	t.Helper()
	h, ok, err := d.Daemon.Store.Host(store.HostPrefix(netip.MustParseAddr(ip)))
	if err != nil {
		t.Fatal(err)
	}
	return h, ok
}

func stored(t *testing.T, d *demo.Demo, ip string) store.Host {
	t.Helper()
	h, ok := lookup(t, d, ip)
	if !ok {
		t.Fatalf("%s is not in the store", ip)
	}
	return h
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// poll waits until the expression is truthy and returns its value.
func poll[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](js, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatalf("waiting for %s: %v", js, err)
	}
	return v
}

// waitFor waits, up to 30 seconds, until cond holds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("gave up waiting for %s", what)
}

// testLog sends moat's log to the test's.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
