package logsink

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every line reaches the syslog socket with the mail facility and the
// priority of its level, tagged moat, without a time of its own.
func TestSyslog(t *testing.T) {
	dir, err := os.MkdirTemp("", "moat-syslog")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Open(Options{Level: "debug", Format: "json", Output: "syslog", Syslog: "unixgram:" + path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Debug("d")
	s.Info("session", "verdict", "greylisted")
	s.Warn("w")
	s.Error("e")
	// LOG_MAIL is 2<<3; debug 7, info 6, warning 4, err 3.
	for _, want := range []struct{ pri, msg string }{{"<23>", `"msg":"d"`}, {"<22>", `"verdict":"greylisted"`}, {"<20>", `"msg":"w"`}, {"<19>", `"msg":"e"`}} {
		ln.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got := string(buf[:n])
		if !strings.HasPrefix(got, want.pri) || !strings.Contains(got, " moat[") || !strings.Contains(got, want.msg) {
			t.Errorf("syslog got %q, want priority %s, tag moat and %s", got, want.pri, want.msg)
		}
		if strings.Contains(got, `"time"`) {
			t.Errorf("syslog line %q carries a time: syslog stamps it", got)
		}
	}
}

// devIno is what systemd puts in JOURNAL_STREAM for f.
func devIno(t *testing.T, f *os.File) string {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// Under systemd (JOURNAL_STREAM names standard error) every line starts
// with its sd-daemon priority; standard error redirected elsewhere gets
// plain lines with their time.
func TestJournalPriorities(t *testing.T) {
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.Create(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", devIno(t, stderr))
	s, err := Open(Options{Level: "info", Format: "text", Output: "stderr", Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	s.Debug("hidden")
	s.Info("session", "verdict", "tarpit")
	s.Warn("backend unreachable")
	s.Error("broken")
	s.Level.Set(slog.LevelDebug) // a reload
	s.Debug("shown")
	b, _ := os.ReadFile(stderr.Name())
	want := "<6>level=INFO msg=session verdict=tarpit\n<4>level=WARN msg=\"backend unreachable\"\n<3>level=ERROR msg=broken\n<7>level=DEBUG msg=shown\n"
	if string(b) != want {
		t.Errorf("journal got:\n%s\nwant:\n%s", b, want)
	}

	plain, err := Open(Options{Level: "info", Format: "text", Output: "stderr", Stderr: other})
	if err != nil {
		t.Fatal(err)
	}
	plain.Warn("w")
	b, _ = os.ReadFile(other.Name())
	if !strings.HasPrefix(string(b), "time=") || !strings.Contains(string(b), "level=WARN msg=w") {
		t.Errorf("standard error that is not the journal got %q, want a plain line with its time", b)
	}
}
