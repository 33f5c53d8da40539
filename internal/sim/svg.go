package sim

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteSVG writes the report's charts into dir: stopped.svg (the share of
// bot sessions each policy stops before DATA), delay-POLICY.svg (the
// first-delivery delay of legitimate mail by sender type, one chart per
// policy) and tarpit.svg (bot-hours held in the tarpit per hour). The
// SVG is written by hand: a chart is a few dozen elements.
func (r *Report) WriteSVG(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{"stopped.svg": r.stoppedChart(), "tarpit.svg": r.tarpitChart()}
	for _, res := range r.Results {
		files["delay-"+fileName(res.Policy)+".svg"] = r.delayChart(res)
	}
	var names []string
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return nil, err
		}
		names = append(names, path)
	}
	return names, nil
}

// fileName keeps a policy name to letters, digits, '-' and '_'.
func fileName(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			return c
		}
		return '_'
	}, s)
}

// palette is colour-blind safe (Okabe and Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"}

// chart is a plot area with margins, drawn into an SVG document.
type chart struct {
	b            strings.Builder
	w, h         float64
	left, right  float64
	top, bottom  float64
	xmin, xmax   float64
	ymin, ymax   float64
	xlog         bool
	legendY      float64
	legendColumn float64
}

func newChart(title string, w, h float64) *chart {
	c := &chart{w: w, h: h, left: 70, right: 180, top: 40, bottom: 50}
	fmt.Fprintf(&c.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&c.b, `<rect width="%g" height="%g" fill="white"/>`+"\n", w, h)
	c.text(w/2, 22, "middle", 14, title)
	c.legendY = c.top + 10
	c.legendColumn = w - c.right + 15
	return c
}

func (c *chart) text(x, y float64, anchor string, size float64, s string) {
	fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%g">%s</text>`+"\n", x, y, anchor, size, html.EscapeString(s))
}

func (c *chart) line(x1, y1, x2, y2 float64, stroke string, width float64) {
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%g"/>`+"\n", x1, y1, x2, y2, stroke, width)
}

// x and y map data to the plot area.
func (c *chart) x(v float64) float64 {
	lo, hi := c.xmin, c.xmax
	if c.xlog {
		v, lo, hi = math.Log10(v), math.Log10(lo), math.Log10(hi)
	}
	return c.left + (v-lo)/(hi-lo)*(c.w-c.left-c.right)
}

func (c *chart) y(v float64) float64 {
	return c.h - c.bottom - (v-c.ymin)/(c.ymax-c.ymin)*(c.h-c.top-c.bottom)
}

// axes draws the frame, the ticks with their labels, and the axis names.
func (c *chart) axes(xticks, yticks []float64, xlabel, ylabel func(float64) string, xname, yname string) {
	x0, x1, y0, y1 := c.left, c.w-c.right, c.h-c.bottom, c.top
	for _, t := range yticks {
		c.line(x0, c.y(t), x1, c.y(t), "#dddddd", 1)
		c.text(x0-6, c.y(t)+4, "end", 11, ylabel(t))
	}
	for _, t := range xticks {
		c.line(c.x(t), y0, c.x(t), y0+4, "#333333", 1)
		c.text(c.x(t), y0+17, "middle", 11, xlabel(t))
	}
	c.line(x0, y0, x1, y0, "#333333", 1)
	c.line(x0, y0, x0, y1, "#333333", 1)
	c.text((x0+x1)/2, c.h-10, "middle", 12, xname)
	fmt.Fprintf(&c.b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (y0+y1)/2, html.EscapeString(yname))
}

func (c *chart) polyline(pts [][2]float64, colour string) {
	var b strings.Builder
	for _, p := range pts {
		fmt.Fprintf(&b, "%.1f,%.1f ", c.x(p[0]), c.y(p[1]))
	}
	fmt.Fprintf(&c.b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colour, strings.TrimSpace(b.String()))
}

func (c *chart) legend(colour, label string) {
	c.line(c.legendColumn, c.legendY, c.legendColumn+18, c.legendY, colour, 3)
	c.text(c.legendColumn+24, c.legendY+4, "start", 11, label)
	c.legendY += 18
}

func (c *chart) svg() string {
	c.b.WriteString("</svg>\n")
	return c.b.String()
}

// stoppedChart is a bar per policy: the share of bot sessions stopped
// before DATA, with the legitimate messages lost written under it.
func (r *Report) stoppedChart() string {
	n := float64(len(r.Results))
	c := newChart("Bot sessions stopped before DATA", 160+110*n, 360)
	c.right = 30
	c.xmin, c.xmax, c.ymin, c.ymax = 0, n, 0, 100
	c.axes(nil, []float64{0, 25, 50, 75, 100}, nil, func(v float64) string { return fmt.Sprintf("%g%%", v) }, "", "% of bot sessions")
	for i, res := range r.Results {
		v := 100 * res.Bots.StoppedShare
		x0, x1 := c.x(float64(i)+0.2), c.x(float64(i)+0.8)
		fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
			x0, c.y(v), x1-x0, c.y(0)-c.y(v), palette[i%len(palette)])
		c.text((x0+x1)/2, c.y(v)-5, "middle", 11, fmt.Sprintf("%.1f%%", v))
		c.text((x0+x1)/2, c.h-c.bottom+16, "middle", 12, res.Policy)
		c.text((x0+x1)/2, c.h-c.bottom+31, "middle", 10, fmt.Sprintf("%d legitimate lost", res.Legit.Lost))
	}
	return c.svg()
}

// delayTicks are the delay axis ticks, in seconds.
var delayTicks = []float64{10, 60, 600, 3600, 6 * 3600, 86400, 5 * 86400}

// delayChart is, per sender type, the share of a policy's legitimate
// messages delivered within a delay (a cumulative distribution over a log
// axis; immediate deliveries sit at its left end). Lost messages never
// reach 100%.
func (r *Report) delayChart(res *Result) string {
	c := newChart("Legitimate first-delivery delay: "+res.Policy, 720, 400)
	c.xmin, c.xmax, c.ymin, c.ymax, c.xlog = 10, 5*86400, 0, 100, true
	c.axes(delayTicks, []float64{0, 25, 50, 75, 100},
		func(v float64) string { return dur(time.Duration(v) * time.Second) },
		func(v float64) string { return fmt.Sprintf("%g%%", v) },
		"delay after the first attempt (log scale)", "% of messages delivered")
	for i, s := range r.senders {
		l := res.LegitBy[s]
		if l.Messages == 0 {
			continue
		}
		colour := palette[i%len(palette)]
		pts := [][2]float64{{c.xmin, 0}}
		d := l.delays
		for j := 0; j < len(d); j++ {
			// One point per distinct delay, at the share delivered by
			// then.
			if j+1 < len(d) && d[j+1] == d[j] {
				continue
			}
			x := math.Min(math.Max(d[j].Seconds(), c.xmin), c.xmax)
			share := 100 * float64(j+1) / float64(l.Messages)
			pts = append(pts, [2]float64{x, pts[len(pts)-1][1]}, [2]float64{x, share})
		}
		pts = append(pts, [2]float64{c.xmax, pts[len(pts)-1][1]})
		c.polyline(pts, colour)
		label := s
		if l.Lost > 0 {
			label += fmt.Sprintf(" (%d lost)", l.Lost)
		}
		c.legend(colour, label)
	}
	return c.svg()
}

// tarpitChart is the bot-hours held per hour of the trace, a line per
// policy that held any.
func (r *Report) tarpitChart() string {
	c := newChart("Bot-hours held in the tarpit, per hour", 760, 360)
	hours, top := 0, 0.0
	for _, res := range r.Results {
		hours = max(hours, len(res.Tarpit.Hourly))
		for _, v := range res.Tarpit.Hourly {
			top = math.Max(top, v)
		}
	}
	hours = max(hours, 24)
	top = niceCeil(math.Max(top, 1))
	c.xmin, c.xmax, c.ymin, c.ymax = 0, float64(hours), 0, top
	var xt []float64
	for d := 0; d*24 <= hours; d++ {
		xt = append(xt, float64(d*24))
	}
	c.axes(xt, []float64{0, top / 4, top / 2, 3 * top / 4, top},
		func(v float64) string { return fmt.Sprintf("day %d", int(v)/24) },
		func(v float64) string { return fmt.Sprintf("%g", v) },
		"time since the start of the trace", "bot-hours held")
	for i, res := range r.Results {
		if res.Tarpit.Sessions == 0 {
			continue
		}
		colour := palette[i%len(palette)]
		var pts [][2]float64
		for h, v := range res.Tarpit.Hourly {
			pts = append(pts, [2]float64{float64(h) + 0.5, v})
		}
		c.polyline(pts, colour)
		c.legend(colour, fmt.Sprintf("%s (%.0f h)", res.Policy, res.Tarpit.BotHours))
	}
	return c.svg()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
