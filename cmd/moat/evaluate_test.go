package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvaluate: moat evaluate compares the policies named on the command
// line, as a table, as JSON and as charts.
func TestEvaluate(t *testing.T) {
	out := runMoat(t, "", "evaluate", "--days", "1", "--policy", "moat", "--policy", "postgrey-like")
	for _, want := range []string{"1 day from 2026-03-02", "moat", "postgrey-like", "Bot sessions stopped before DATA", "Legitimate messages lost"} {
		if !strings.Contains(out, want) {
			t.Errorf("table has no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "spamd-like") {
		t.Errorf("a policy that was not asked for is in the table:\n%s", out)
	}
	dir := t.TempDir()
	out = runMoat(t, "", "evaluate", "--days", "1", "--seed", "2", "--policy", "none", "--json", "--svg", dir)
	var rep struct {
		Seed     uint64 `json:"seed"`
		Days     int    `json:"days"`
		Policies []struct {
			Policy string `json:"policy"`
		} `json:"policies"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Seed != 2 || rep.Days != 1 || len(rep.Policies) != 1 || rep.Policies[0].Policy != "none" {
		t.Errorf("JSON %+v, %v:\n%s", rep, err, out)
	}
	for _, f := range []string{"stopped.svg", "tarpit.svg", "delay-none.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("chart %s: %v", f, err)
		}
	}
}

// TestEvaluateConfigFile: a moat configuration is a policy, named after
// its file.
func TestEvaluateConfigFile(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "strict.toml")
	os.WriteFile(cfg, []byte("[greylist]\nmin_retry = \"20m\"\n"), 0o600)
	out := runMoat(t, "", "evaluate", "--days", "1", "--policy", cfg)
	if !strings.Contains(out, "strict") {
		t.Errorf("no column for the file's policy:\n%s", out)
	}
}

// TestEvaluateLog: --log replays Postfix logs, by default for moat only.
func TestEvaluateLog(t *testing.T) {
	logs, _ := filepath.Glob("../../internal/sim/testdata/maillog/mail.log*")
	out := runMoat(t, "", append([]string{"evaluate", "--log"}, logs...)...)
	for _, want := range []string{"moat evaluate --log: 2 files", "Legitimate messages that would wait", "old-sales@example.org"} {
		if !strings.Contains(out, want) {
			t.Errorf("log report has no %q:\n%s", want, out)
		}
	}
}

// TestEvaluateErrors: mistakes on the command line say what to do.
func TestEvaluateErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"evaluate", "--policy", "greyd"}, `policy "greyd": not a built-in one (moat, spamd-like, postgrey-like, none)`},
		{[]string{"evaluate", "--days", "0"}, "--days 0: want 1..365"},
		{[]string{"evaluate", "mail.log"}, "log files go after --log"},
		{[]string{"evaluate", "--log", "x.log", "--svg", "d"}, "with --log, use --json"},
		{[]string{"evaluate", "--model", "/nonexistent/model.toml"}, "model: open /nonexistent/model.toml"},
	} {
		_, err := moat(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("moat %s: %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
