package reputation

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/logfollow"
	"moat/internal/store/bolt"
)

// TestVerdictsWhileStopped: verdicts written while moat is stopped, across
// a rotation by rename, are all read after it starts, in order, none twice.
func TestVerdictsWhileStopped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	st, err := bolt.Open(filepath.Join(dir, "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	spam := func(ip string) string {
		return "Jan  1 10:00:00 mx postfix/cleanup[1]: 4F1C2D: milter-reject: END-OF-MESSAGE from unknown[" + ip + "]: 5.7.1 Gtube pattern; from=<a@b>\n"
	}
	write := func(path, s string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	var got []string
	run := func() {
		f := &logfollow.Follower{Path: path, Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Line: func(line string) {
				if fb, ok := ParseLine(FormatPostfix, line); ok {
					got = append(got, fb.IP.String())
				}
			}}
		// One poll, as at start, then stop.
		ctx, cancel := cancelled()
		defer cancel()
		f.Run(ctx)
	}
	write(path, spam("192.0.2.1")) // before moat's first start: history, not read
	run()
	write(path, spam("192.0.2.2"))
	run()
	// Stopped: two verdicts, a rotation, two more.
	write(path, spam("192.0.2.3")+spam("192.0.2.4"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write(path, spam("192.0.2.5")+spam("192.0.2.6"))
	run()
	run()
	if s := strings.Join(got, " "); s != "192.0.2.2 192.0.2.3 192.0.2.4 192.0.2.5 192.0.2.6" {
		t.Fatalf("verdicts read: %s", s)
	}
}

// cancelled returns a context that is already done: Run polls once and
// returns.
func cancelled() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx, cancel
}
