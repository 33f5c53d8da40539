package traps

import (
	"html/template"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"moat/internal/clock"
)

// Page serves the bait page. Every view mints Count new addresses for the
// visitor. People never see them (display:none), screen readers skip them
// (aria-hidden), and robots.txt asks well-behaved crawlers to stay away, so
// whoever collects them is a harvester that ignores all three.
type Page struct {
	Bait  *Bait
	Count int // addresses per view; default 3
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed. Behind nginx every visitor would otherwise be the proxy's
	// own address, and that address would be blacklisted.
	TrustedProxies []netip.Prefix
	Clock          clock.Clock // default clock.Real
}

var pageTmpl = template.Must(template.New("bait").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="robots" content="noindex, nofollow, noarchive">
<title>Contact</title>
</head>
<body>
<p>Please use the contact form on our main site.</p>
<div style="display:none" aria-hidden="true">
{{range .}}<a href="mailto:{{.}}" tabindex="-1">{{.}}</a><br>
{{end}}</div>
</body>
</html>
`))

// robotsTxt keeps well-behaved crawlers off every page of the bait server,
// so the only visitors that read the addresses are the ones that ignore it.
const robotsTxt = "User-agent: *\nDisallow: /\n"

func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/robots.txt" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(robotsTxt))
		return
	}
	ip, ok := p.visitor(r)
	if !ok {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var c clock.Clock = clock.Real{}
	if p.Clock != nil {
		c = p.Clock
	}
	n := p.Count
	if n <= 0 {
		n = 3
	}
	addrs := make([]string, n)
	now := c.Now()
	for i := range addrs {
		addrs[i] = p.Bait.Mint(ip, now)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// A shared cache would hand one visitor's addresses to the next, and
	// blame the first for the second's harvest.
	h.Set("Cache-Control", "no-store, private")
	h.Set("X-Robots-Tag", "noindex, nofollow, noarchive")
	pageTmpl.Execute(w, addrs)
}

// visitor returns the address that fetched the page: the peer, or, when the
// peer is a trusted proxy, the last address in X-Forwarded-For that is not
// one of the trusted proxies (the ones before it can be forged by the
// client).
func (p *Page) visitor(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	peer = peer.Unmap().WithZone("")
	if !p.trusted(peer) {
		return peer, true
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}, false
		}
		a = a.Unmap().WithZone("")
		if !p.trusted(a) {
			return a, true
		}
	}
	// Only proxies in the chain: nobody to blame. Refuse rather than
	// mint addresses that would blacklist our own proxy.
	return netip.Addr{}, false
}

func (p *Page) trusted(a netip.Addr) bool {
	for _, pfx := range p.TrustedProxies {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// Snippet is HTML to include in the pages of an existing site: a link to
// the bait page at url that people do not see, screen readers skip and
// polite crawlers do not follow. Harvesters follow every link.
func Snippet(url string) string {
	var b strings.Builder
	b.WriteString("<!-- hidden link for address harvesters; see docs/traps.md -->\n")
	b.WriteString(`<a href="`)
	template.HTMLEscape(&b, []byte(url))
	b.WriteString(`" rel="nofollow" style="display:none" aria-hidden="true" tabindex="-1">contact</a>` + "\n")
	return b.String()
}
