package traps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"moat/internal/store"
)

// kindFollow keeps, per followed file, where reading stopped, so a restart
// resumes instead of reading the whole file again or missing what was
// written while moat was down.
const kindFollow = "follow"

// Follower tails a log file like "tail -F": it reads lines as they are
// written, follows rotation by rename (logrotate's default: the file is
// renamed and a new one created) and by copytruncate (the file is copied
// and cut to zero in place), and resumes where it stopped after a restart.
// On its very first start it begins at the end of the file (old history is
// for "moat traps mine"), or at the beginning of a file that did not exist
// yet when it started.
type Follower struct {
	Path     string
	Match    *LineMatcher
	Store    store.Store
	Observe  func(Observation)
	Interval time.Duration // how often to look for new lines; default 1s
	Log      *slog.Logger

	f       *os.File
	fi      os.FileInfo
	off     int64        // end of the last complete line handed to Observe
	partial []byte       // bytes after off: a line still being written
	saved   *followState // as last stored
	missing bool         // the file was absent at the last look (logged once)
}

type followState struct {
	ID  uint64 `json:"id"` // inode number; 0 where there is none
	Off int64  `json:"off"`
}

// Run follows the file until ctx is done.
func (f *Follower) Run(ctx context.Context) {
	iv := f.Interval
	if iv <= 0 {
		iv = time.Second
	}
	if f.Log == nil {
		f.Log = slog.Default()
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	defer f.close()
	for {
		f.poll()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Follower) close() {
	if f.f != nil {
		f.save()
		f.f.Close()
		f.f = nil
	}
}

// poll reads what is new, and notices rotation and truncation.
func (f *Follower) poll() {
	if f.f == nil && !f.open(false) {
		return
	}
	f.read()
	cur, err := os.Stat(f.Path)
	switch {
	case err != nil:
		// Renamed and not yet created again: keep reading the old
		// file, the writer may still be using it.
	case !os.SameFile(cur, f.fi):
		// Rotated by rename: read what the writer added to the old
		// file before it let go, then start the new one at its first
		// byte.
		f.read()
		f.f.Close()
		f.f = nil
		if f.open(true) {
			f.read()
		}
	case cur.Size() < f.off+int64(len(f.partial)):
		// Truncated in place (copytruncate): everything in it is new.
		f.off, f.partial = 0, nil
		if _, err := f.f.Seek(0, io.SeekStart); err != nil {
			f.Log.Warn("traps: follow", "file", f.Path, "err", err.Error())
		}
		f.read()
	}
	f.save()
}

// open opens the file. fromStart is set after a rotation seen while
// running; otherwise the stored offset decides, and without one reading
// starts at the end.
func (f *Follower) open(fromStart bool) bool {
	fh, err := os.Open(f.Path)
	if err != nil {
		if !f.missing {
			f.Log.Warn("traps: follow: cannot open the log, will retry", "file", f.Path, "err", err.Error())
			f.missing = true
		}
		return false
	}
	wasMissing := f.missing
	f.missing = false
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return false
	}
	off := int64(0)
	if !fromStart {
		st, ok := f.load()
		switch {
		case !ok && wasMissing:
			// Created since we first looked: all of it is new.
			off = 0
		case !ok:
			off = fi.Size()
		case st.ID != fileID(fi):
			// A different file than the one we stopped in: rotated
			// while we were away, so all of it is new.
			off = 0
		case st.Off <= fi.Size():
			off = st.Off
		default:
			// Shorter than where we stopped: truncated meanwhile.
			off = 0
		}
	}
	if _, err := fh.Seek(off, io.SeekStart); err != nil {
		fh.Close()
		return false
	}
	f.f, f.fi, f.off, f.partial = fh, fi, off, nil
	return true
}

func (f *Follower) read() {
	buf := make([]byte, 32<<10)
	for {
		n, err := f.f.Read(buf)
		if n > 0 {
			f.consume(buf[:n])
		}
		if err != nil || n == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				f.Log.Warn("traps: follow", "file", f.Path, "err", err.Error())
			}
			return
		}
	}
}

func (f *Follower) consume(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(f.partial)+len(b) > maxLogLine {
				// An overlong line: skip it, but count its bytes.
				f.off += int64(len(f.partial) + len(b))
				f.partial = f.partial[:0]
				return
			}
			f.partial = append(f.partial, b...)
			return
		}
		line := b[:i+1]
		b = b[i+1:]
		n := len(f.partial) + len(line)
		if len(f.partial) > 0 {
			line = append(f.partial, line...)
			f.partial = f.partial[:0]
		}
		f.off += int64(n)
		if o, ok := f.Match.Match(string(line)); ok && f.Observe != nil {
			f.Observe(o)
		}
	}
}

func (f *Follower) load() (followState, bool) {
	b, ok, err := f.Store.Get(kindFollow, f.Path)
	if err != nil || !ok {
		return followState{}, false
	}
	var st followState
	if json.Unmarshal(b, &st) != nil {
		return followState{}, false
	}
	return st, true
}

func (f *Follower) save() {
	if f.f == nil {
		return
	}
	st := followState{ID: fileID(f.fi), Off: f.off}
	if f.saved != nil && *f.saved == st {
		return
	}
	b, _ := json.Marshal(st)
	if err := f.Store.Put(kindFollow, f.Path, b, time.Time{}); err == nil {
		f.saved = &st
	}
}
