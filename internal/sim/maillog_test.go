package sim

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// logFiles copies the test log into a directory, the second part gzipped
// as logrotate leaves it, both dated in March 2026.
func logFiles(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	mod := time.Date(2026, 3, 3, 0, 0, 0, 0, time.Local)
	plain, err := os.ReadFile("testdata/maillog/mail.log")
	if err != nil {
		t.Fatal(err)
	}
	later, err := os.ReadFile("testdata/maillog/mail.log.later")
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(later)
	zw.Close()
	// Newest first, as a shell glob over rotated logs may give them.
	files := []string{filepath.Join(dir, "mail.log.1.gz"), filepath.Join(dir, "mail.log")}
	for i, b := range [][]byte{gz.Bytes(), plain} {
		if err := os.WriteFile(files[i], b, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(files[i], mod, mod)
	}
	return files
}

// TestReadMaillog: sessions, queued messages, filter verdicts and early
// talkers are put together from Postfix's records; a logged-in
// submission is not border traffic.
func TestReadMaillog(t *testing.T) {
	ml, err := ReadMaillog(logFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	sessions, hosts, legit, spam := ml.Counts()
	if sessions != 6 || hosts != 5 || legit != 2 || spam != 1 {
		t.Errorf("counts: %d sessions, %d hosts, %d legitimate, %d spam; want 6, 5, 2, 1", sessions, hosts, legit, spam)
	}
	first := ml.Sessions[0]
	if first.Client.String() != "192.0.2.10" || len(first.Messages) != 1 ||
		first.Messages[0].Sender != "alice@sender.example" || strings.Join(first.Messages[0].Rcpts, ",") != "bob@example.org,carol@example.org" {
		t.Errorf("first session: %+v %+v", first, first.Messages)
	}
	if s := ml.Sessions[1]; s.Client.String() != "203.0.113.5" || !s.EarlyTalk || strings.Join(s.Refused, ",") != "old-sales@example.org" {
		t.Errorf("early talker: %+v", s)
	}
	if ml.First.Month() != time.March || ml.First.Year() != 2026 || ml.Last.Hour() != 11 {
		t.Errorf("span %s to %s", ml.First, ml.Last)
	}
}

// TestReplayMaillog: what moat would have done to the log: the first
// message of a new sender waits for its retry, the sender's next one goes
// straight through, the early talker is held, the spam is stopped, and
// the address three bots asked for is a trap candidate. Without
// greylisting nothing waits.
func TestReplayMaillog(t *testing.T) {
	ml, err := ReadMaillog(logFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ml.Replay(DefaultModel(), policies(t, "moat", "none"))
	if err != nil {
		t.Fatal(err)
	}
	moat, none := rep.Results[0], rep.Results[1]
	if moat.Sessions != 6 || moat.Greylisted != 4 || moat.Tarpitted != 1 || moat.Passed != 1 || moat.Retries != 1 {
		t.Errorf("moat sessions: %+v", moat)
	}
	if moat.Legit.Messages != 2 || moat.Legit.Delayed != 1 || moat.Legit.Lost != 0 || moat.Legit.Max.D() != 30*time.Minute {
		t.Errorf("moat legitimate mail: %+v", moat.Legit)
	}
	if moat.Spam.Messages != 1 || moat.Spam.Delivered != 0 || moat.BotHours <= 0 {
		t.Errorf("moat spam %+v, bot-hours %v", moat.Spam, moat.BotHours)
	}
	if none.Passed != 6 || none.Legit.Delayed != 0 || none.Spam.Delivered != 1 {
		t.Errorf("no greylisting: %+v", none)
	}
	if len(rep.Candidates) != 1 || rep.Candidates[0].Addr != "old-sales@example.org" || len(rep.Candidates[0].Hosts) != 3 {
		t.Errorf("trap candidates: %+v", rep.Candidates)
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	for _, want := range []string{"6 sessions from 5 hosts", "Legitimate messages that would wait", "old-sales@example.org  3 hosts"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table has no %q:\n%s", want, table.String())
		}
	}
}
