package sim

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func policies(t *testing.T, names ...string) []Policy {
	t.Helper()
	var out []Policy
	for _, n := range names {
		p, err := LoadPolicy(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// oneDay is the default model cut to its first day, for tests.
func oneDay() *Trace {
	m := DefaultModel()
	m.Days = 1
	return NewTrace(m, 1)
}

// TestDefaultModel: on the default model moat loses no legitimate message
// and stops nearly every bot session before DATA; spamd's exact address
// makes the senders that retry from a pool wait far longer, and some of
// their mail is lost; without greylisting most bot mail is delivered.
func TestDefaultModel(t *testing.T) {
	tr := oneDay()
	res, err := Run(tr, policies(t, "moat", "spamd-like", "none"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	moat, spamd, none := res[0], res[1], res[2]
	if moat.Legit.Messages < 900 || moat.Legit.Lost != 0 || moat.Legit.Delivered != moat.Legit.Messages {
		t.Errorf("moat: %+v, want every legitimate message delivered", moat.Legit)
	}
	if moat.Bots.StoppedShare < 0.9 {
		t.Errorf("moat stops %.3f of bot sessions before DATA", moat.Bots.StoppedShare)
	}
	if moat.Tarpit.Sessions == 0 || moat.Tarpit.BotHours <= 0 || moat.Tarpit.PerMessage <= 0 {
		t.Errorf("moat's tarpit held nothing: %+v", moat.Tarpit)
	}
	for _, s := range []string{"gmail-like", "yahoo-like"} {
		if m, sp := moat.LegitBy[s], spamd.LegitBy[s]; sp.P50 <= m.Max {
			t.Errorf("%s: spamd-like median delay %s, moat's longest %s: pools should suffer from the exact address", s, sp.P50.D(), m.Max.D())
		}
	}
	if spamd.Legit.Lost == 0 {
		t.Errorf("spamd-like lost nothing: the model's pool senders give up on it after 5 days")
	}
	if none.Bots.Delivered < none.Bots.Messages/2 || none.Legit.Delayed != 0 {
		t.Errorf("no greylisting: %d of %d bot messages delivered, %d legitimate delayed", none.Bots.Delivered, none.Bots.Messages, none.Legit.Delayed)
	}
}

// TestRunIsReproducible: the same trace and policy give the same numbers.
func TestRunIsReproducible(t *testing.T) {
	m := DefaultModel()
	m.Days = 1
	m.Bots = m.Bots[:3]
	var out [2][]byte
	for i := range out {
		res, err := Run(NewTrace(m, 3), policies(t, "moat"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		res[0].Elapsed = 0
		out[i], _ = json.Marshal(res[0])
	}
	if !bytes.Equal(out[0], out[1]) {
		t.Errorf("two runs differ:\n%s\n%s", out[0], out[1])
	}
}

// TestReport: the table names every policy and row, the JSON reads back,
// and every chart is well-formed SVG with a mark for each policy.
func TestReport(t *testing.T) {
	m := DefaultModel()
	m.Days = 1
	tr := NewTrace(m, 1)
	var progress [][2]int64
	res, err := Run(tr, policies(t, "moat", "postgrey-like"), Options{Progress: func(done, total int64) { progress = append(progress, [2]int64{done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2 * len(tr.Messages)); len(progress) == 0 || progress[len(progress)-1] != [2]int64{want, want} {
		t.Errorf("progress %v, want it to end at %d of %d", progress, want, want)
	}
	r := NewReport("default", tr, res)
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"moat", "postgrey-like", "Bot sessions stopped before DATA", "Legitimate messages lost", "gmail-like", "early-talker"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table has no %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != 2 || back.Results[0].Legit.Messages != res[0].Legit.Messages ||
		back.Results[1].Legit.P90 != res[1].Legit.P90 {
		t.Errorf("JSON does not read back: %v", err)
	}
	dir := t.TempDir()
	files, err := r.WriteSVG(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Errorf("charts %v, want stopped, tarpit and a delay chart per policy", files)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		d := xml.NewDecoder(bytes.NewReader(b))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: not well-formed: %v", f, err)
			}
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "stopped.svg"))
	if strings.Count(string(b), "<rect ") != 1+len(res) {
		t.Errorf("stopped.svg: want a background and a bar per policy:\n%s", b)
	}
}

// TestFilterFeedback: a policy that follows the content filter's log hears
// its verdicts on what was delivered; karma takes the properly retrying
// bots out again, and costs legitimate senders nothing.
func TestFilterFeedback(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "follow.toml")
	os.WriteFile(cfg, []byte("[[reputation.follow]]\nfile = \"/var/log/rspamd/rspamd.log\"\nformat = \"rspamd\"\n"), 0o600)
	pols := policies(t, "moat", cfg)
	if pols[1].Name != "follow" || !pols[1].Traps {
		t.Fatalf("a configuration file: %+v", pols[1])
	}
	res, err := Run(oneDay(), pols, Options{})
	if err != nil {
		t.Fatal(err)
	}
	plain, follow := res[0], res[1]
	if follow.Bots.Delivered >= plain.Bots.Delivered*9/10 || follow.Legit.Lost != 0 {
		t.Errorf("following the filter: %d bot messages delivered (%d without), %d legitimate lost",
			follow.Bots.Delivered, plain.Bots.Delivered, follow.Legit.Lost)
	}
}
