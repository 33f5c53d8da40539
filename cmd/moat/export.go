package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"moat/internal/admin"
	"moat/internal/migrate"
)

// exportCmd and importCmd move all of moat's state between stores (bolt
// and redis alike) and make backups. Like every operator's command they go
// through the daemon when one runs (it holds the bolt file), else they
// serve themselves from the store.
func exportCmd(cfgPath *string) *cobra.Command {
	op := operator{cfgPath: cfgPath}
	return &cobra.Command{
		Use:   "export [FILE|-]",
		Short: "write all state (hosts, traps, counters, triplets, records) as JSON lines, to FILE or standard output",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			name := "-"
			if len(args) == 1 {
				name = args[0]
			}
			var out io.Writer = c.OutOrStdout()
			var tmp *os.File
			if name != "-" {
				// A backup appears whole or not at all.
				var err error
				tmp, err = os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
				if err != nil {
					return fmt.Errorf("export: %w", err)
				}
				defer os.Remove(tmp.Name())
				defer tmp.Close()
				out = tmp
			}
			bar := newProgress("export", "lines", 0)
			cw := &lineCounter{w: out, bar: bar}
			err := op.do("GET", "/v1/export", nil, cw)
			bar.done()
			if err == nil && !cw.ended() {
				err = errors.New("the export stopped before its end line: see the daemon's log")
			}
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if tmp != nil {
				if err := tmp.Sync(); err != nil {
					return fmt.Errorf("export: %w", err)
				}
				if err := tmp.Close(); err != nil {
					return fmt.Errorf("export: %w", err)
				}
				if err := os.Rename(tmp.Name(), name); err != nil {
					return fmt.Errorf("export: %w", err)
				}
				fmt.Fprintf(c.ErrOrStderr(), "exported %d lines to %s\n", cw.lines.Load(), name)
			}
			return nil
		},
	}
}

func importCmd(cfgPath *string) *cobra.Command {
	op := operator{cfgPath: cfgPath}
	var opt migrate.Options
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "store the state in an export file (from FILE or standard input), replacing entries with the same keys; with --from, what spamd or postgrey knows",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if opt.Format != "moat" {
				return importFrom(c, op, opt, args[0])
			}
			var in io.Reader = c.InOrStdin()
			var size int64
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("import: %w", err)
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
					size = st.Size()
				}
				in = f
			}
			bar := newProgress("import", "bytes", size)
			var n admin.Counts
			err := op.do("POST", "/v1/import", &byteCounter{r: in, bar: bar}, &n)
			bar.done()
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "imported %v\n", n)
			return nil
		},
	}
	cmd.Flags().StringVar(&opt.Format, "from", "moat", "what FILE holds: moat (a moat export), spamdb (what OpenBSD's spamdb prints) or postgrey (db_dump -p of postgrey.db or postgrey_clients.db)")
	cmd.Flags().IntVar(&opt.AWL, "postgrey-awl", 5, "postgrey's --auto-whitelist-clients: passes that make a client in postgrey_clients.db white")
	return cmd
}

// importFrom carries another greylister's file over. The whole file is
// read once before anything is stored, so that a bad line changes
// nothing; standard input is kept in a temporary file for that.
func importFrom(c *cobra.Command, op operator, opt migrate.Options, name string) error {
	if err := opt.Check(); err != nil {
		return err
	}
	f, err := os.Open(name)
	if name == "-" {
		f, err = os.CreateTemp("", "moat-import-*")
		if err == nil {
			defer os.Remove(f.Name())
			if _, err = io.Copy(f, c.InOrStdin()); err == nil {
				_, err = f.Seek(0, io.SeekStart)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	if _, err := migrate.Check(bufio.NewReader(f), opt, time.Now()); err != nil {
		return fmt.Errorf("%w (nothing imported)", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	bar := newProgress("import", "bytes", size)
	var n migrate.Counts
	err = op.do("POST", "/v1/import?"+admin.MigrateQuery(opt), &byteCounter{r: f, bar: bar}, &n)
	bar.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.OutOrStdout(), "imported from %s: %v\n", opt.Format, n)
	for _, note := range n.Notes {
		fmt.Fprintf(c.OutOrStdout(), "  %s\n", note)
	}
	return nil
}

// lineCounter counts the lines written through it and notes whether the
// last one is the end line: an export cut short by an error has none.
type lineCounter struct {
	w     io.Writer
	bar   *progress
	lines atomic.Int64
	head  []byte // the first bytes of the current line
	end   bool   // the last complete line is the end line
}

var endLine = []byte(`{"type":"end"`)

func (l *lineCounter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	for _, b := range p[:n] {
		if b == '\n' {
			l.lines.Add(1)
			l.end = bytes.HasPrefix(l.head, endLine)
			l.head = l.head[:0]
			continue
		}
		if len(l.head) < len(endLine) {
			l.head = append(l.head, b)
		}
	}
	l.bar.set(l.lines.Load())
	return n, err
}

func (l *lineCounter) ended() bool { return l.end && len(l.head) == 0 }

// byteCounter counts the bytes read through it.
type byteCounter struct {
	r   io.Reader
	bar *progress
	n   atomic.Int64
}

func (b *byteCounter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.bar.set(b.n.Add(int64(n)))
	return n, err
}

// progress draws a progress line on standard error, if it is a terminal,
// a few times a second: a bar when the total is known, a count otherwise.
type progress struct {
	what  string
	unit  string // of total: "bytes", "messages"
	total int64
	cur   atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
	on    bool
}

func newProgress(what, unit string, total int64) *progress {
	p := &progress{what: what, unit: unit, total: total, stop: make(chan struct{})}
	if st, err := os.Stderr.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return p // not a terminal: a log or a pipe wants no bars
	}
	p.on = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.draw()
				fmt.Fprintln(os.Stderr)
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

func (p *progress) set(n int64) { p.cur.Store(n) }

func (p *progress) draw() {
	n := p.cur.Load()
	if p.total <= 0 {
		fmt.Fprintf(os.Stderr, "\r%s: %d lines", p.what, n)
		return
	}
	const width = 40
	frac := min(float64(n)/float64(p.total), 1)
	full := int(frac * width)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < full {
			bar[i] = '='
		}
	}
	fmt.Fprintf(os.Stderr, "\r%s: [%s] %3.0f%% %d/%d %s", p.what, bar, frac*100, n, p.total, p.unit)
}

func (p *progress) done() {
	if p.on {
		close(p.stop)
		p.wg.Wait()
		p.on = false
	}
}
