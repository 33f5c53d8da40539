package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"moat/internal/admin"
	"moat/internal/config"
	"moat/internal/daemon"
)

// operator carries out one request of an operator's command: through the
// daemon's admin socket if a daemon runs, else in this process over the
// store, so the commands work either way and answer alike (the same
// refusals, with the API's message).
type operator struct {
	cfgPath *string
	mining  bool // the request needs the trap miner, which reads its records when built
}

// do sends the request as admin.Client.Do does: body and out are JSON
// values, or a reader and a writer for a stream.
func (o operator) do(method, path string, body, out any) error {
	cfg, err := config.Load(*o.cfgPath)
	if err != nil {
		return err
	}
	err = admin.NewClient(cfg.AdminSocket()).Do(method, path, body, out)
	if !errors.Is(err, admin.ErrNoDaemon) {
		return err
	}
	// No daemon took the connection, so not a byte of a streamed body
	// was read: the same request can be served here.
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	st, err := daemon.OpenExistingStore(cfg, log)
	if errors.Is(err, daemon.ErrNoStore) {
		return fmt.Errorf("%w (and no moat daemon answers on %s)", err, cfg.AdminSocket())
	}
	if err != nil {
		return fmt.Errorf("no moat daemon answers on %s, and the store cannot be opened: %w", cfg.AdminSocket(), err)
	}
	svc, err := daemon.Offline(cfg, st, o.mining, log)
	if err == nil {
		err = admin.LocalClient(svc).Do(method, path, body, out)
	}
	return errors.Join(err, st.Close())
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns to w; Flush it when done.
func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// fmtExpiry is when an entry expires: an operator's entry never does.
func fmtExpiry(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return fmtTime(*t)
}
