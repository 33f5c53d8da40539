package reputation

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"
)

// Follower reads a log file as "tail -F" does and hands every verdict it
// finds to Handle. It starts at the end of the file (old verdicts were
// counted by an earlier run, or are too old to matter) and follows the
// file across rotation: when the path names a new file, or the file was
// truncated, it finishes the old one and reads the new one from its start.
// A file that does not exist yet is waited for. As with tail -F, a file
// truncated in place and written past its old size between two polls
// looks like a file that grew; logrotate's copytruncate leaves it empty
// long enough for a poll a second to notice.
type Follower struct {
	Path   string
	Format string // FormatRspamd, FormatSpamAssassin or FormatPostfix
	Handle func(Feedback)
	Poll   time.Duration // how often to look for new lines; default 1s
	Log    *slog.Logger

	f    *os.File
	fi   os.FileInfo
	off  int64
	r    *bufio.Reader
	buf  []byte // a line not yet ended by '\n'
	skip bool   // the current line is too long and is being dropped
}

// maxLine bounds a partial line kept between polls; longer lines are
// dropped, since no verdict line is that long.
const maxLine = 64 << 10

// NewFollower opens path (if it exists) and positions at its end, so
// that only lines written from now on are read.
func NewFollower(path, format string, handle func(Feedback)) *Follower {
	fl := &Follower{Path: path, Format: format, Handle: handle}
	if fl.open() {
		if off, err := fl.f.Seek(0, io.SeekEnd); err == nil {
			fl.off = off
		}
	}
	return fl
}

func (fl *Follower) open() bool {
	f, err := os.Open(fl.Path)
	if err != nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return false
	}
	fl.f, fl.fi, fl.off, fl.buf, fl.skip = f, fi, 0, nil, false
	fl.r = bufio.NewReaderSize(f, 64<<10)
	return true
}

// Run follows the file until ctx is done.
func (fl *Follower) Run(ctx context.Context) error {
	poll := fl.Poll
	if poll <= 0 {
		poll = time.Second
	}
	if fl.Log == nil {
		fl.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	defer func() {
		if fl.f != nil {
			fl.f.Close()
		}
	}()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		fl.Step()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Step reads what is new and checks for rotation once. Run calls it every
// Poll; tests call it directly.
func (fl *Follower) Step() {
	if fl.f == nil {
		if !fl.open() {
			return
		}
	}
	fl.drain()
	fi, err := os.Stat(fl.Path)
	if err != nil {
		return // moved away, the new file is not there yet
	}
	if !os.SameFile(fi, fl.fi) {
		// Rotated: the old file is complete; read the new one from
		// its first line.
		fl.drain()
		fl.f.Close()
		fl.f = nil
		if fl.open() {
			fl.drain()
		}
		return
	}
	if fi.Size() < fl.off {
		// Truncated in place (copytruncate).
		if _, err := fl.f.Seek(0, io.SeekStart); err == nil {
			fl.off, fl.buf, fl.skip = 0, nil, false
			fl.r.Reset(fl.f)
			fl.drain()
		}
	}
}

func (fl *Follower) drain() {
	for {
		chunk, err := fl.r.ReadSlice('\n')
		fl.off += int64(len(chunk))
		if !fl.skip && len(fl.buf)+len(chunk) <= maxLine {
			fl.buf = append(fl.buf, chunk...)
		} else {
			fl.buf, fl.skip = fl.buf[:0], true
		}
		if err == nil {
			if !fl.skip {
				line := string(fl.buf[:len(fl.buf)-1])
				if fb, ok := ParseLine(fl.Format, line); ok && fl.Handle != nil {
					fl.Handle(fb)
				}
			}
			fl.buf, fl.skip = fl.buf[:0], false
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if !errors.Is(err, io.EOF) {
			fl.Log.Warn("follow: read", "file", fl.Path, "err", err.Error())
		}
		return
	}
}
