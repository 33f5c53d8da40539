package logfollow

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/store"
	"moat/internal/store/bolt"
)

func newStore(t *testing.T) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func line(n int) string { return fmt.Sprintf("Mar  3 06:25:02 mx prog[1]: line %d\n", n) }

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

// followed is a Follower and the numbers of the lines it handed over.
type followed struct {
	f    *Follower
	seen []string
}

func newFollower(st store.Store, path string) *followed {
	fd := &followed{}
	fd.f = &Follower{Path: path, Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Line: func(l string) {
			_, n, _ := strings.Cut(l, "line ")
			fd.seen = append(fd.seen, n)
		}}
	return fd
}

// take returns what was read since the last take.
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
	path := filepath.Join(t.TempDir(), "mail.log")
	st := newStore(t)
	appendFile(t, path, line(1))

	fd := newFollower(st, path)
	fd.f.poll()
	if got := fd.take(); got != "" {
		t.Fatalf("first start read history: %q", got)
	}
	appendFile(t, path, line(2)+line(3))
	fd.f.poll()
	if got := fd.take(); got != "2 3" {
		t.Fatalf("after appends: %q", got)
	}

	// Half a line: nothing until the rest is written.
	l4 := line(4)
	appendFile(t, path, l4[:20])
	fd.f.poll()
	if got := fd.take(); got != "" {
		t.Fatalf("half a line was read: %q", got)
	}
	appendFile(t, path, l4[20:])
	fd.f.poll()
	if got := fd.take(); got != "4" {
		t.Fatalf("completed line: %q", got)
	}

	// logrotate's default: the writer adds a last line to the old file,
	// the file is renamed and a new one created.
	appendFile(t, path, line(5))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".1", line(6))
	fd.f.poll() // the path is gone for now
	appendFile(t, path, line(7))
	fd.f.poll()
	if got := fd.take(); got != "5 6 7" {
		t.Fatalf("across rename and create: %q", got)
	}

	// copytruncate: the file is copied and cut to zero in place, then
	// written again, shorter than before.
	appendFile(t, path, line(8))
	fd.f.poll()
	fd.take()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, line(9))
	fd.f.poll()
	if got := fd.take(); got != "9" {
		t.Fatalf("after copytruncate: %q", got)
	}

	// copytruncate again, and written past the old size before the
	// next look: the size looks like growth, the first line tells.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "Mar  3 07:00:00 mx prog[1]: line 10\n"+line(11)+line(12))
	fd.f.poll()
	if got := fd.take(); got != "10 11 12" {
		t.Fatalf("after copytruncate and regrowth: %q", got)
	}

	// An overlong line is dropped whole; the next one is read.
	appendFile(t, path, strings.Repeat("x", MaxLine+100)+"\n"+line(13))
	fd.f.poll()
	if got := fd.take(); got != "13" {
		t.Fatalf("after an overlong line: %q", got)
	}

	// A restart resumes where the last one stopped.
	fd.f.close()
	appendFile(t, path, line(14))
	fd2 := newFollower(st, path)
	fd2.f.poll()
	if got := fd2.take(); got != "14" {
		t.Fatalf("after a restart: %q", got)
	}
	fd2.f.close()
}

// TestFollowerRotatedWhileStopped: lines written while moat is stopped,
// before and after a rotation by rename, are all read after it starts, in
// order, none twice.
func TestFollowerRotatedWhileStopped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	st := newStore(t)
	appendFile(t, path, line(1))
	fd := newFollower(st, path)
	fd.f.poll()
	appendFile(t, path, line(2))
	fd.f.poll()
	if got := fd.take(); got != "2" {
		t.Fatalf("before the stop: %q", got)
	}
	fd.f.close()

	// While moat is down: more lines, a rotation, lines in the new file.
	appendFile(t, path, line(3)+line(4))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, line(5)+line(6))

	fd2 := newFollower(st, path)
	fd2.f.poll()
	if got := fd2.take(); got != "3 4 5 6" {
		t.Fatalf("after a start across a rotation: %q, want 3 4 5 6", got)
	}
	appendFile(t, path, line(7))
	fd2.f.poll()
	fd2.f.close()
	// And a second start reads nothing twice.
	fd3 := newFollower(st, path)
	fd3.f.poll()
	appendFile(t, path, line(8))
	fd3.f.poll()
	fd3.f.close()
	if got := fd2.take() + "|" + fd3.take(); got != "7|8" {
		t.Fatalf("after the next start: %q, want 7|8", got)
	}
}

// TestFollowerRotatedNotRecreated: moat starts after a rotation and before
// the writer made the new file; the old file's tail is read at once, and
// the new file from its first byte when it comes.
func TestFollowerRotatedNotRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	st := newStore(t)
	appendFile(t, path, line(1))
	fd := newFollower(st, path)
	fd.f.poll()
	fd.f.close()
	appendFile(t, path, line(2))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	fd2 := newFollower(st, path)
	fd2.f.poll()
	fd2.f.poll()
	if got := fd2.take(); got != "2" {
		t.Fatalf("the rotated tail: %q, want 2 (once)", got)
	}
	appendFile(t, path, line(3))
	fd2.f.poll()
	if got := fd2.take(); got != "3" {
		t.Fatalf("the new file: %q", got)
	}
	fd2.f.close()
}

// TestFollowerTruncatedWhileStopped: copytruncate while moat is down, the
// file written again past where moat stopped: read from its start.
func TestFollowerTruncatedWhileStopped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	st := newStore(t)
	appendFile(t, path, line(1))
	fd := newFollower(st, path)
	fd.f.poll()
	appendFile(t, path, line(2))
	fd.f.poll()
	fd.f.close()
	fd.take()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "Mar  3 08:00:00 mx prog[1]: line 3\n"+line(4)+line(5))
	fd2 := newFollower(st, path)
	fd2.f.poll()
	if got := fd2.take(); got != "3 4 5" {
		t.Fatalf("got %q, want 3 4 5", got)
	}
	fd2.f.close()
}

func TestFollowerWaitsForFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	fd := newFollower(newStore(t), path)
	fd.f.poll()
	// A file created after the start is new from its first byte.
	appendFile(t, path, line(1))
	fd.f.poll()
	appendFile(t, path, line(2))
	fd.f.poll()
	if got := fd.take(); got != "1 2" {
		t.Fatalf("got %q", got)
	}
	fd.f.close()
}

// TestFollowerRenamedThenCreatedLater: rotated by rename while running,
// and the new file made only a few looks later: meanwhile the old file is
// still read, then the new one from its first byte, nothing twice.
func TestFollowerRenamedThenCreatedLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	st := newStore(t)
	appendFile(t, path, line(1))
	fd := newFollower(st, path)
	fd.f.poll()
	appendFile(t, path, line(2))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, line(3))
	fd.f.poll()
	if got := fd.take(); got != "2 3" {
		t.Fatalf("after the rotation: %q", got)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	fd.f.poll()
	appendFile(t, path+".1", line(4))
	fd.f.poll()
	appendFile(t, path, line(5))
	fd.f.poll()
	if got := fd.take(); got != "4 5" {
		t.Fatalf("the old file's last line and the file created later: %q, want 4 5", got)
	}
	fd.f.close()
}
