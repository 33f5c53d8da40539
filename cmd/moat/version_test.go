package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A binary built from a git checkout says its commit and the commit's date
// in "moat version" and "moat --version" alike. The build is made from a
// fresh clone of this checkout: the go command reads the revision only
// where .git is a directory (not in a worktree) and GOFLAGS may turn VCS
// stamping off, as it does on machines that set -buildvcs=false.
func TestVersionFromBuildInfo(t *testing.T) {
	for _, tool := range []string{"git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the version test builds moat from a git clone", tool)
		}
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v: the test runs in a git checkout of moat", err)
	}
	dir := t.TempDir()
	clone := filepath.Join(dir, "moat")
	run := func(dir string, env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run(dir, nil, "git", "clone", "-q", strings.TrimSpace(string(top)), clone)
	rev := run(clone, nil, "git", "rev-parse", "HEAD")
	when, err := time.Parse(time.RFC3339, run(clone, nil, "git", "log", "-1", "--format=%cI"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "moat-bin")
	run(clone, []string{"GOFLAGS=-buildvcs=true"}, "go", "build", "-o", bin, "./cmd/moat")
	long := run(dir, nil, bin, "--version")
	short := run(dir, nil, bin, "version")
	if long != short {
		t.Errorf("moat --version %q and moat version %q differ", long, short)
	}
	want := "revision " + rev + ", built " + when.UTC().Format(time.RFC3339)
	if !strings.HasPrefix(long, "moat ") || !strings.Contains(long, want) {
		t.Errorf("moat --version = %q, want it to carry %q", long, want)
	}
}
