// Package buildinfo says which moat this is: the module version, the VCS
// revision and the build date, as the go command wrote them into the
// binary. Nothing is set by hand at build time, so a binary cannot claim a
// version it was not built from.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"time"
)

// Info is what the binary knows of its build. A field the build did not
// record is "unknown" (a binary built with -buildvcs=false has no
// revision and no date).
type Info struct {
	Version  string `json:"version"`  // module version: a tag, a pseudo-version, or "(devel)"
	Revision string `json:"revision"` // VCS commit, with "+dirty" when the tree had changes
	Date     string `json:"date"`     // commit time, RFC 3339 in UTC
	Go       string `json:"go"`
}

const unknown = "unknown"

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: unknown, Revision: unknown, Date: unknown, Go: unknown}
	}
	return From(bi)
}

// From reads Info out of the go command's build information. The date is
// the commit's (vcs.time): the same source always gives the same date,
// where a clock reading at build time would not.
func From(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, Revision: unknown, Date: unknown, Go: bi.GoVersion}
	if in.Version == "" {
		in.Version = unknown
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				in.Date = t.UTC().Format(time.RFC3339)
			}
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && in.Revision != unknown {
		in.Revision += "+dirty"
	}
	return in
}

// String is the one line "moat version" prints.
func (in Info) String() string {
	return fmt.Sprintf("moat %s (revision %s, built %s, %s)", in.Version, in.Revision, in.Date, in.Go)
}

// Attrs are the fields a log line carries.
func (in Info) Attrs() []any {
	return []any{"version", in.Version, "revision", in.Revision, "build_date", in.Date}
}
