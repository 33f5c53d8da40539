package traps

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/clock"
	"moat/internal/store"
)

func rejectLine(n int) string {
	return fmt.Sprintf("Mar  3 06:25:02 mx postfix/smtpd[1207]: NOQUEUE: reject: RCPT from unknown[192.0.2.%d]: 550 5.1.1 <u%d@example.org>: Recipient address rejected: User unknown in virtual mailbox table; from=<> to=<u%d@example.org>\n", n, n, n)
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

type followed struct {
	f    *Follower
	seen []string
}

func newFollower(t *testing.T, st store.Store, path string) *followed {
	fd := &followed{}
	fd.f = &Follower{Path: path, Match: defaultMatcher(t), Store: st, Log: quietLog(),
		Observe: func(o Observation) { fd.seen = append(fd.seen, o.Addr) }}
	return fd
}

// take returns what was observed since the last take.
func (fd *followed) take() string {
	s := strings.Join(fd.seen, " ")
	fd.seen = nil
	return s
}

// TestFollower follows a log through its life: the first start skips the
// history, appends are read, a line is read only once it is complete,
// rename-and-create and copytruncate rotations lose nothing, and a restart
// resumes where it stopped.
func TestFollower(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	st := newStore(t, clock.NewFake(t0))
	appendFile(t, path, rejectLine(1)+"noise\n")

	fd := newFollower(t, st, path)
	fd.f.poll()
	if got := fd.take(); got != "" {
		t.Fatalf("first start read history: %q", got)
	}

	appendFile(t, path, rejectLine(2)+"noise\n"+rejectLine(3))
	fd.f.poll()
	if got := fd.take(); got != "u2@example.org u3@example.org" {
		t.Fatalf("after appends: %q", got)
	}

	// Half a line: nothing until the rest is written.
	l4 := rejectLine(4)
	appendFile(t, path, l4[:40])
	fd.f.poll()
	if got := fd.take(); got != "" {
		t.Fatalf("half a line was read: %q", got)
	}
	appendFile(t, path, l4[40:])
	fd.f.poll()
	if got := fd.take(); got != "u4@example.org" {
		t.Fatalf("completed line: %q", got)
	}

	// logrotate's default: the writer adds a last line to the old file,
	// the file is renamed and a new one created.
	appendFile(t, path, rejectLine(5))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".1", rejectLine(6))
	appendFile(t, path, rejectLine(7))
	fd.f.poll()
	if got := fd.take(); got != "u5@example.org u6@example.org u7@example.org" {
		t.Fatalf("across rename and create: %q", got)
	}

	// copytruncate: the file is copied and cut to zero in place, then
	// written again (shorter than before).
	appendFile(t, path, rejectLine(8))
	fd.f.poll()
	fd.take()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, rejectLine(9))
	fd.f.poll()
	if got := fd.take(); got != "u9@example.org" {
		t.Fatalf("after copytruncate: %q", got)
	}

	// A restart resumes where the last one stopped.
	fd.f.close()
	appendFile(t, path, rejectLine(10))
	fd2 := newFollower(t, st, path)
	fd2.f.poll()
	if got := fd2.take(); got != "u10@example.org" {
		t.Fatalf("after a restart: %q", got)
	}

	// Rotated while moat was down: the new file is read from its start.
	fd2.f.close()
	os.Rename(path, path+".2")
	appendFile(t, path, rejectLine(11))
	fd3 := newFollower(t, st, path)
	fd3.f.poll()
	if got := fd3.take(); got != "u11@example.org" {
		t.Fatalf("rotated while down: %q", got)
	}
	fd3.f.close()
}

func TestFollowerWaitsForFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	fd := newFollower(t, newStore(t, clock.NewFake(t0)), path)
	fd.f.poll()
	// A file created after the start is new from its first byte.
	appendFile(t, path, rejectLine(1))
	fd.f.poll()
	appendFile(t, path, rejectLine(2))
	fd.f.poll()
	if got := fd.take(); got != "u1@example.org u2@example.org" {
		t.Fatalf("got %q", got)
	}
	fd.f.close()
}
