// Package logsink routes moat's log lines where an operator can sort them:
// to standard error, where under systemd every line carries its priority
// for the journal (sd-daemon's "<4>" prefix), or to the local syslog with
// the mail facility, next to the mail server's own lines. Each line keeps
// its priority, so "journalctl -p warning" and syslog's mail.warn rules
// see the warnings.
//
// The level can be changed while moat runs (a reload); the output and the
// format cannot.
package logsink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Options say where lines go and how they look.
type Options struct {
	Level  string // debug, info, warn or error
	Format string // json or text
	Output string // stderr or syslog

	// Stderr is standard error; nil: os.Stderr.
	Stderr *os.File
	// Syslog is the syslog socket, "network:address" (for tests, e.g.
	// "unixgram:/tmp/x/log"); "": the local syslog (/dev/log).
	Syslog string
}

// Sink is a logger with the level a reload may change.
type Sink struct {
	*slog.Logger
	Level *slog.LevelVar
	close func() error
}

// Close closes the syslog connection, if any.
func (s *Sink) Close() error {
	if s.close == nil {
		return nil
	}
	return s.close()
}

// priorities are the syslog severities of the four levels moat logs at,
// in rank order (see rank): debug, info, warning, err.
var priorities = [4]syslog.Priority{syslog.LOG_DEBUG, syslog.LOG_INFO, syslog.LOG_WARNING, syslog.LOG_ERR}

// rank is the index in priorities of level l.
func rank(l slog.Level) int {
	switch {
	case l < slog.LevelInfo:
		return 0
	case l < slog.LevelWarn:
		return 1
	case l < slog.LevelError:
		return 2
	}
	return 3
}

// Open builds the sink opt asks for.
func Open(opt Options) (*Sink, error) {
	lv := new(slog.LevelVar)
	if err := lv.UnmarshalText([]byte(opt.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	stderr := opt.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	var (
		dest    [4]io.Writer
		stamped = true // lines carry their own time
		closeFn func() error
	)
	switch opt.Output {
	case "syslog":
		network, addr, _ := strings.Cut(opt.Syslog, ":")
		w, err := syslog.Dial(network, addr, syslog.LOG_MAIL|syslog.LOG_INFO, "moat")
		if err != nil {
			return nil, fmt.Errorf("log.output = \"syslog\": %w (is a syslog daemon running? else use \"stderr\")", err)
		}
		for i, p := range priorities {
			dest[i] = syslogWriter{w, p}
		}
		stamped, closeFn = false, w.Close
	case "", "stderr":
		out := &lineWriter{w: stderr}
		if journal(os.Getenv("JOURNAL_STREAM"), stderr) {
			for i, p := range priorities {
				dest[i] = &prefixWriter{out, "<" + strconv.Itoa(int(p)) + ">"}
			}
			stamped = false
			break
		}
		for i := range dest {
			dest[i] = out
		}
	default:
		return nil, fmt.Errorf("log.output: %q: want stderr or syslog", opt.Output)
	}
	ho := &slog.HandlerOptions{Level: lv}
	if !stamped {
		// The journal and syslog time every line themselves.
		ho.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	var h byLevel
	h.level = lv
	for i, w := range dest {
		if opt.Format == "text" {
			h.hs[i] = slog.NewTextHandler(w, ho)
		} else {
			h.hs[i] = slog.NewJSONHandler(w, ho)
		}
	}
	return &Sink{Logger: slog.New(h), Level: lv, close: closeFn}, nil
}

// journal reports whether f is the journal's stream: systemd sets
// JOURNAL_STREAM to "device:inode" of the stream it connects to standard
// error, and a child whose standard error was redirected elsewhere must
// not prefix its lines.
func journal(env string, f *os.File) bool {
	dev, ino, ok := strings.Cut(env, ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return dev == strconv.FormatUint(uint64(st.Dev), 10) && ino == strconv.FormatUint(st.Ino, 10)
}

// byLevel hands every record to the handler of its priority. The four
// handlers differ only in where they write, so a line's priority is known
// from the record, never read back from the text.
type byLevel struct {
	hs    [4]slog.Handler
	level slog.Leveler
}

func (b byLevel) Enabled(_ context.Context, l slog.Level) bool { return l >= b.level.Level() }

func (b byLevel) Handle(ctx context.Context, r slog.Record) error {
	return b.hs[rank(r.Level)].Handle(ctx, r)
}

func (b byLevel) WithAttrs(as []slog.Attr) slog.Handler {
	for i := range b.hs {
		b.hs[i] = b.hs[i].WithAttrs(as)
	}
	return b
}

func (b byLevel) WithGroup(name string) slog.Handler {
	for i := range b.hs {
		b.hs[i] = b.hs[i].WithGroup(name)
	}
	return b
}

// lineWriter writes whole lines one at a time: the four handlers share it.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// prefixWriter puts a priority in front of every line, in the same write.
type prefixWriter struct {
	out    *lineWriter
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	line := make([]byte, 0, len(p.prefix)+len(b))
	line = append(append(line, p.prefix...), b...)
	if _, err := p.out.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}

// syslogWriter sends every line at one priority.
type syslogWriter struct {
	w *syslog.Writer
	p syslog.Priority
}

func (s syslogWriter) Write(b []byte) (int, error) {
	m := strings.TrimSuffix(string(b), "\n")
	var err error
	switch s.p {
	case syslog.LOG_DEBUG:
		err = s.w.Debug(m)
	case syslog.LOG_INFO:
		err = s.w.Info(m)
	case syslog.LOG_WARNING:
		err = s.w.Warning(m)
	default:
		err = s.w.Err(m)
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}
