// Package logfollow reads what the mail system's programs write to their
// logs: it follows a log file through rotation, keeping its place in the
// store, and it reads the fixed part of each line — the syslog or
// maillog_file header, the program's tag, Postfix's reject records and the
// records that trace a session and its queued messages — so that the
// packages that weigh the lines (traps, reputation, the simulator's log
// replay) never search one.
//
// A log line mixes what a program wrote with what a client sent: a
// Message-ID, a HELO name, an envelope address. Anything after the first
// field a client controls is opaque here and is never looked into for a
// pattern; a parser that did would let any sender write evidence about any
// host. The package never decides anything: it hands lines and fields to
// its callers.
package logfollow

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"moat/internal/store"
)

// kind is the store record kind that keeps, per followed path, where
// reading stopped.
const kind = "follow"

// MaxLine bounds one log line; longer ones are skipped whole (no record
// any parser reads is that long), never fatal.
const MaxLine = 64 << 10

// headLen is how many bytes at the start of a file identify its content:
// a file cut to zero and written again past where moat stopped has the
// same inode and a size that looks like growth, but not the same first
// line (its timestamp differs).
const headLen = 64

// Follower reads a log file as "tail -F" does and hands every complete line
// to Line, exactly once as long as moat stops cleanly (after a crash, the
// lines read since the last save, a second at most, are read again).
//
//   - On its very first start it begins at the end of the file (old
//     history is for "moat traps mine"); a file that does not exist yet
//     is read from its first byte once it appears.
//   - Where it stopped is kept in the store (kind "follow", key Path) with
//     the file's inode, so a restart resumes there.
//   - Rotation by rename (logrotate's default) is followed while running:
//     the writer's last lines in the old file are read, then the new file
//     from its start. When the rotation happened while moat was down, the
//     unread tail of the old file is read from Path+".1" (found by its
//     inode) before the new file.
//   - Rotation by copytruncate is noticed when the file is shorter than
//     where reading stopped, or when its first bytes changed.
type Follower struct {
	Path     string
	Store    store.Store
	Line     func(line string) // a complete line, without its end of line
	Interval time.Duration     // how often to look for new lines; default 1s
	Log      *slog.Logger

	f       *os.File
	fi      os.FileInfo
	off     int64  // end of the last complete line handed to Line
	partial []byte // bytes after off: a line still being written
	skip    bool   // the line being read is overlong and is dropped
	head    []byte // the file's first bytes as last read, at most headLen
	saved   state  // as last stored
	missing bool   // the file was absent at the last look (logged once)

	loaded bool  // st and stOK were read from the store
	st     state // where the last run stopped
	stOK   bool
}

type state struct {
	ID   uint64 `json:"id"` // inode number; 0 where there is none
	Off  int64  `json:"off"`
	Head string `json:"head,omitempty"` // hex SHA-256 of the file's first bytes, up to Off
	N    int    `json:"n,omitempty"`    // how many first bytes Head covers
}

// Run follows the file until ctx is done.
func (f *Follower) Run(ctx context.Context) {
	iv := f.Interval
	if iv <= 0 {
		iv = time.Second
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

func (f *Follower) log() *slog.Logger {
	if f.Log == nil {
		return slog.Default()
	}
	return f.Log
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
	if f.f == nil && !f.start() {
		return
	}
	if f.headChanged() {
		// Cut and written again (copytruncate) past where reading
		// stopped, so that the size looks like growth: the first
		// bytes tell.
		f.rewind()
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
		f.save()
		f.f.Close()
		f.f = nil
		// Whatever the path names from now on is new from its first
		// byte, should it only appear at a later look.
		f.st, f.stOK, f.loaded = state{}, true, true
		if f.open(0) {
			f.read()
		}
	case cur.Size() < f.off+int64(len(f.partial)):
		// Truncated in place (copytruncate): everything in it is new.
		f.rewind()
		f.read()
	}
	f.save()
}

func (f *Follower) rewind() {
	if _, err := f.f.Seek(0, io.SeekStart); err != nil {
		f.log().Warn("follow: rewind after truncation", "file", f.Path, "err", err.Error())
		return
	}
	f.off, f.partial, f.skip, f.head = 0, nil, false, nil
}

// start opens the file where the stored state says reading stopped.
func (f *Follower) start() bool {
	if !f.loaded {
		f.st, f.stOK = f.load()
		f.loaded = true
	}
	st, ok := f.st, f.stOK
	fi, err := os.Stat(f.Path)
	if err != nil {
		if ok && f.readRotated(st) {
			// Rotated while moat was down and not created again
			// yet: the new file, when it comes, is new from its
			// first byte.
			f.st = state{}
			f.saveState(f.st)
		}
		if !f.missing {
			f.log().Warn("follow: cannot open the log, will retry", "file", f.Path, "err", err.Error())
			f.missing = true
		}
		return false
	}
	wasMissing := f.missing
	f.missing = false
	var off int64
	switch {
	case !ok && wasMissing:
		// Created since we first looked: all of it is new.
	case !ok:
		off = fi.Size()
	case st.ID != fileID(fi):
		// A different file than the one we stopped in: rotated while
		// we were away. Its unread tail is in the rotated file; the
		// new one is all new.
		f.readRotated(st)
		f.st = state{}
	case st.Off <= fi.Size() && sameHead(f.Path, st):
		off = st.Off
	default:
		// Shorter than where we stopped, or its first bytes changed:
		// truncated meanwhile.
	}
	return f.open(off)
}

// readRotated reads the rest of the file moat stopped in, when rotation by
// rename moved it to Path+".1" while moat was down. It reports whether it
// found that file.
func (f *Follower) readRotated(st state) bool {
	old := f.Path + ".1"
	fh, err := os.Open(old)
	if err != nil {
		return false
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil || fileID(fi) != st.ID || st.ID == 0 {
		return false
	}
	off := st.Off
	if off > fi.Size() || !sameHead(old, st) {
		off = 0
	}
	if _, err := fh.Seek(off, io.SeekStart); err != nil {
		return false
	}
	f.log().Info("follow: reading the rest of the rotated log", "file", old, "from", off)
	r := &reader{line: f.Line}
	if err := r.drain(fh); err != nil {
		f.log().Warn("follow: read", "file", old, "err", err.Error())
	}
	return true
}

// open opens the file at off.
func (f *Follower) open(off int64) bool {
	fh, err := os.Open(f.Path)
	if err != nil {
		return false
	}
	fi, err := fh.Stat()
	if err == nil {
		_, err = fh.Seek(off, io.SeekStart)
	}
	if err != nil {
		fh.Close()
		return false
	}
	f.f, f.fi, f.off, f.partial, f.skip, f.head = fh, fi, off, nil, false, nil
	return true
}

func (f *Follower) read() {
	r := &reader{line: f.Line, off: f.off, partial: f.partial, skip: f.skip}
	if err := r.drain(f.f); err != nil {
		f.log().Warn("follow: read", "file", f.Path, "err", err.Error())
	}
	f.off, f.partial, f.skip = r.off, r.partial, r.skip
}

// ReadFile reads a whole log file once, gzip-compressed when its name ends
// in .gz (as logrotate leaves the older ones), and calls fn for every
// line. It returns the number of lines read; an error names the file.
func ReadFile(path string, fn func(line string)) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	n, err := ReadLines(r, fn)
	if err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// ReadLines hands every line of r to fn, without its end of line, as a
// Follower does; a last line without a newline is handed over too. It
// returns the number of lines, overlong ones (skipped) included.
func ReadLines(r io.Reader, fn func(string)) (int, error) {
	rd := &reader{line: fn}
	err := rd.drain(r)
	if len(rd.partial) > 0 || rd.skip {
		rd.consume([]byte{'\n'})
	}
	return rd.lines, err
}

// reader splits what it reads into lines. off is the end of the last
// complete line; partial holds the bytes of an unfinished one.
type reader struct {
	line    func(string)
	off     int64
	partial []byte
	skip    bool
	lines   int
}

func (r *reader) drain(src io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.consume(buf[:n])
		}
		if errors.Is(err, io.EOF) || err == nil && n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (r *reader) consume(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if r.skip || len(r.partial)+len(b) > MaxLine {
				r.skip, r.partial = true, r.partial[:0]
			} else {
				r.partial = append(r.partial, b...)
			}
			return
		}
		chunk := b[:i]
		b = b[i+1:]
		skip := r.skip || len(r.partial)+len(chunk) > MaxLine
		line := append(r.partial, chunk...)
		r.off += int64(len(line) + 1)
		r.lines++
		if skip {
			// An overlong line: its bytes are counted, its text is
			// not read.
			line = line[:0]
		}
		r.partial, r.skip = line[:0], false
		if !skip && r.line != nil {
			r.line(string(bytes.TrimSuffix(line, []byte{'\r'})))
		}
	}
}

// headChanged reports whether the file's first bytes are no longer those
// read before: it was cut and written again.
func (f *Follower) headChanged() bool {
	if len(f.head) == 0 {
		return false
	}
	b := make([]byte, len(f.head))
	n, _ := f.f.ReadAt(b, 0)
	return !bytes.Equal(b[:n], f.head)
}

// knownHead returns the first bytes of the file up to where reading
// stopped (at most headLen), reading them once.
func (f *Follower) knownHead() []byte {
	n := int(min(f.off, headLen))
	if len(f.head) < n {
		b := make([]byte, n)
		got, _ := f.f.ReadAt(b, 0)
		f.head = b[:got]
	}
	return f.head[:min(n, len(f.head))]
}

// sameHead reports whether the file at path starts with the bytes st
// remembers (states stored before heads were kept always match).
func sameHead(path string, st state) bool {
	if st.N == 0 {
		return true
	}
	fh, err := os.Open(path)
	if err != nil {
		return false
	}
	defer fh.Close()
	b := make([]byte, st.N)
	if n, _ := fh.ReadAt(b, 0); n != st.N {
		return false
	}
	return hashHead(b) == st.Head
}

func hashHead(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func (f *Follower) load() (state, bool) {
	b, ok, err := f.Store.Get(kind, f.Path)
	if err != nil || !ok {
		return state{}, false
	}
	var st state
	if json.Unmarshal(b, &st) != nil {
		return state{}, false
	}
	return st, true
}

func (f *Follower) save() {
	if f.f == nil {
		return
	}
	st := state{ID: fileID(f.fi), Off: f.off}
	if h := f.knownHead(); len(h) > 0 {
		st.N, st.Head = len(h), hashHead(h)
	}
	if st != f.saved {
		f.saveState(st)
	}
}

func (f *Follower) saveState(st state) {
	b, _ := json.Marshal(st)
	if err := f.Store.Put(kind, f.Path, b, time.Time{}); err == nil {
		f.saved = st
	}
}
