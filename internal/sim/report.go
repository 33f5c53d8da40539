package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a run's results with what they were run on, as `moat
// evaluate --json` writes it.
type Report struct {
	Model    string    `json:"model"` // the model file, or "default"
	Seed     uint64    `json:"seed"`
	Start    time.Time `json:"start"`
	Days     int       `json:"days"`
	Legit    int       `json:"legit_messages"` // counted (after the warm-up)
	Bots     int       `json:"bot_messages"`
	Results  []*Result `json:"policies"`
	senders  []string
	botKinds []string
}

// NewReport gathers the results of a run over tr.
func NewReport(model string, tr *Trace, results []*Result) *Report {
	r := &Report{Model: model, Seed: tr.Seed, Start: tr.Counted, Days: tr.Model.Days, Results: results}
	for _, m := range tr.Messages {
		if m.At.Before(tr.Counted) {
			continue
		}
		if m.Kind == Legit {
			r.Legit++
		} else {
			r.Bots++
		}
	}
	for _, s := range tr.Model.Legit {
		r.senders = append(r.senders, s.Name)
	}
	for _, b := range tr.Model.Bots {
		r.botKinds = append(r.botKinds, b.Name)
	}
	return r
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteTable writes the comparison as a table, one column per policy.
func (r *Report) WriteTable(w io.Writer) error {
	days := fmt.Sprintf("%d days", r.Days)
	if r.Days == 1 {
		days = "1 day"
	}
	fmt.Fprintf(w, "moat evaluate: model %s, %s from %s, seed %d: %d legitimate messages, %d bot messages\n\n",
		r.Model, days, r.Start.Format("2006-01-02"), r.Seed, r.Legit, r.Bots)
	t := newColumns(w, r.Results)
	row := t.row
	row("", func(res *Result) string { return res.Policy })
	row("Bot sessions stopped before DATA", func(res *Result) string { return pct(res.Bots.StoppedShare) })
	row("Bot messages delivered", func(res *Result) string { return ratio(res.Bots.Delivered, res.Bots.Messages) })
	row("Legitimate messages lost", func(res *Result) string { return fmt.Sprint(res.Legit.Lost) })
	row("Legitimate messages delayed", func(res *Result) string { return ratio(res.Legit.Delayed, res.Legit.Messages) })
	row("Delay p50 / p90", func(res *Result) string { return dur(res.Legit.P50.D()) + " / " + dur(res.Legit.P90.D()) })
	row("Delay max", func(res *Result) string { return dur(res.Legit.Max.D()) })
	row("Bot-hours in the tarpit", func(res *Result) string { return fmt.Sprintf("%.1f", res.Tarpit.BotHours) })
	tarpit := func(d Seconds) func(*Result) string {
		return func(res *Result) string {
			if res.Tarpit.Sessions == 0 {
				return "-"
			}
			return dur(d.D())
		}
	}
	row("Tarpit time per message", func(res *Result) string { return tarpit(res.Tarpit.PerMessage)(res) })
	row("One single-message session", func(res *Result) string { return tarpit(res.Tarpit.Single)(res) })
	row("Most sessions held at once", func(res *Result) string { return fmt.Sprint(res.Tarpit.Peak) })
	blank := func(*Result) string { return "" }
	row("", blank)
	row("Legitimate delay p90 / max (lost)", blank)
	for _, s := range r.senders {
		row(s, func(res *Result) string {
			l := res.LegitBy[s]
			return fmt.Sprintf("%s / %s (%d)", dur(l.P90.D()), dur(l.Max.D()), l.Lost)
		})
	}
	row("", blank)
	row("Bot sessions stopped", blank)
	for _, b := range r.botKinds {
		row(b, func(res *Result) string { return pct(res.BotsBy[b].StoppedShare) })
	}
	return t.tw.Flush()
}

// columns is a table with a row label and one right-aligned column per
// result.
type columns[R any] struct {
	tw      *tabwriter.Writer
	results []R
}

func newColumns[R any](w io.Writer, results []R) *columns[R] {
	return &columns[R]{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight), results: results}
}

// row writes one row: its label, then cell of every result.
func (c *columns[R]) row(label string, cell func(R) string) {
	cells := []string{label}
	for _, res := range c.results {
		cells = append(cells, cell(res))
	}
	fmt.Fprintln(c.tw, strings.Join(cells, "\t")+"\t")
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func ratio(n, of int) string {
	if of == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.1f%%)", n, 100*float64(n)/float64(of))
}

// dur writes a duration the way an operator reads it: 0, 45s, 6m, 1h30m,
// 2d3h.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%02ds", m, s)
	case d < 24*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		return fmt.Sprintf("%dh%02dm", h, m)
	}
	days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	return fmt.Sprintf("%dd%02dh", days, h)
}
