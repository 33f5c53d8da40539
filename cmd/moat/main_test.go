package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/store/bolt"
)

// moat runs the command line with args against the configuration at cfg
// and returns what it printed on standard output, and its error.
func moat(t *testing.T, cfg string, args ...string) (string, error) {
	t.Helper()
	root := rootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"-c", cfg}, args...))
	err := root.Execute()
	if err != nil && errOut.Len() > 0 {
		t.Logf("moat %s wrote on standard error:\n%s", strings.Join(args, " "), errOut.Bytes())
	}
	return out.String(), err
}

// runMoat is moat for a command that must succeed.
func runMoat(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	out, err := moat(t, cfg, args...)
	if err != nil {
		t.Fatalf("moat %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// writeConfig writes a configuration with its data_dir in dir, and extra,
// and makes its store, as a first "moat run" does.
func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	cfg := writeConfigOnly(t, dir, extra)
	st, err := bolt.Open(filepath.Join(dir, "data", "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// writeConfigOnly writes the configuration of writeConfig and makes no
// store.
func writeConfigOnly(t *testing.T, dir, extra string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o750); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "moat.toml")
	text := fmt.Sprintf("data_dir = %q\n%s", filepath.Join(dir, "data"), extra)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// shortDir is a temporary directory with a short path, for a data_dir that
// holds the admin socket: a unix socket's path has at most about 100 bytes.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "moat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Without -c, moat reads the system's file when there is one, else runs
// with its built-in defaults, and says which on standard error.
func TestDefaultConfigFile(t *testing.T) {
	t.Setenv("MOAT_CONFIG", "")
	dir := t.TempDir()
	sys := filepath.Join(dir, "moat.toml")
	old := systemConfig
	systemConfig = sys
	t.Cleanup(func() { systemConfig = old })
	check := func() (string, string) {
		root := rootCmd()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs([]string{"check"})
		root.Execute()
		return out.String(), errOut.String()
	}
	out, errOut := check()
	if !strings.Contains(errOut, "no -c given and no "+sys+": using the built-in defaults") || !strings.Contains(out, "built-in defaults: valid") {
		t.Errorf("with no system file: stderr %q, stdout %q; want the built-in defaults, said", errOut, out)
	}
	if err := os.WriteFile(sys, []byte("hostname = \"sys.example.org\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut = check()
	if !strings.Contains(errOut, "no -c given: reading "+sys) || !strings.Contains(out, "hostname sys.example.org") {
		t.Errorf("with a system file: stderr %q, stdout %q; want it read, and said", errOut, out)
	}
}
