// Package migrate carries another greylister's memory over into moat, so
// that switching to moat does not greylist every known sender again on
// day one. It reads what the other program's own tools print — OpenBSD
// spamd's "spamdb" listing and the "db_dump -p" text of postgrey's
// Berkeley DB files — and stores what each entry means to moat: hosts
// white with their expiry, trapped hosts black, spamtrap addresses as
// traps, greylist entries as triplets.
//
// It reads those files by their fixed fields, never by searching a line:
// HELO names and addresses in them were chosen by senders. A line it
// cannot read is an error naming the line, and Check reads a whole file
// before Import stores anything from it, so a bad file changes nothing.
// Imported evidence is never proof: an imported black host is told 4xx,
// so a mistake in the file costs a delay, never a message.
package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"moat/internal/classify"
	"moat/internal/smtp"
	"moat/internal/store"
)

// Formats are the files moat imports from.
var Formats = []string{"spamdb", "postgrey"}

// Options say what a file is and how to read it.
type Options struct {
	// Format is "spamdb" or "postgrey".
	Format string
	// AWL is postgrey's --auto-whitelist-clients: a client with this
	// many successful retries in postgrey_clients.db is white. Default 5,
	// postgrey's.
	AWL int
}

func (o Options) withDefaults() Options {
	if o.AWL <= 0 {
		o.AWL = 5
	}
	return o
}

// Check says what is wrong with the options, naming the flag to fix.
func (o Options) Check() error {
	for _, f := range Formats {
		if o.Format == f {
			return nil
		}
	}
	return fmt.Errorf("import --from %q: want moat, %s", o.Format, strings.Join(Formats, " or "))
}

// maxLine bounds one line of a file. spamd keeps a HELO, a sender and a
// recipient of at most a few hundred bytes each, and db_dump doubles
// what is not printable; anything longer is not one of these files.
const maxLine = 64 << 10

// maxNotes bounds the notes kept about lines left out.
const maxNotes = 10

// Counts says what an import stored and what it left out, and why.
type Counts struct {
	White    int `json:"white"`
	Black    int `json:"black"`
	Traps    int `json:"traps"`
	Triplets int `json:"triplets"`
	// Stood: moat's own evidence about the host was as strong or
	// stronger, and stayed.
	Stood int `json:"stood"`
	// Expired: the entry's expiry had passed.
	Expired int `json:"expired"`
	// Skipped: entries with nothing moat can use (a postgrey client
	// below the auto-whitelist count, a hashed --privacy key, a spamd
	// DOMAIN line, a greylist entry whose fields cannot be told apart).
	Skipped int `json:"skipped"`
	// Notes name the first lines skipped, and why.
	Notes []string `json:"notes,omitempty"`
}

func (c Counts) String() string {
	return fmt.Sprintf("%d white, %d black, %d traps, %d triplets; %d stood against moat's own entries, %d expired, %d skipped",
		c.White, c.Black, c.Traps, c.Triplets, c.Stood, c.Expired, c.Skipped)
}

func (c *Counts) skip(line int, format string, a ...any) {
	c.Skipped++
	if len(c.Notes) < maxNotes {
		c.Notes = append(c.Notes, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, a...))
	}
}

// entry is one thing a line of a file means to moat: a host, a trap or a
// greylist attempt.
type entry struct {
	host *store.Host // white or black

	trap string // a normalised trap address

	attempt *store.Attempt // with client, sender and rcpt
	client  netip.Addr
	sender  string
	rcpt    string
}

// sink takes each entry as a file is read; an error stops the reading.
type sink func(entry) error

// parse reads r in the given format, calling put for each entry and
// noting what it leaves out in n.
func parse(r io.Reader, opt Options, n *Counts, put sink) error {
	switch opt.Format {
	case "spamdb":
		return parseSpamdb(r, n, put)
	case "postgrey":
		return parsePostgrey(r, opt, n, put)
	}
	return opt.Check()
}

// Check reads a whole file and says whether it can be imported, without
// storing anything. Its counts are what Import would store into an empty
// store now as far as the file tells: an entry it gives no expiry gets
// moat's own at Import, which may find it expired already.
func Check(r io.Reader, opt Options, now time.Time) (Counts, error) {
	opt = opt.withDefaults()
	var n Counts
	err := parse(r, opt, &n, func(e entry) error {
		switch {
		case e.host != nil && !e.host.Expires.IsZero() && !e.host.Expires.After(now),
			e.attempt != nil && !e.attempt.Expires.IsZero() && !e.attempt.Expires.After(now):
			n.Expired++
		default:
			n.count(e)
		}
		return nil
	})
	return n, err
}

func (c *Counts) count(e entry) {
	switch {
	case e.host != nil && e.host.Class == store.White:
		c.White++
	case e.host != nil:
		c.Black++
	case e.trap != "":
		c.Traps++
	default:
		c.Triplets++
	}
}

// Import stores what r holds through eng, so that moat's precedence of
// evidence and its greylist's keys apply, and makes it durable. Call
// Check first: Import stops at the first line it cannot read, and what
// it stored before stays stored.
func Import(eng *classify.Engine, r io.Reader, opt Options) (Counts, error) {
	opt = opt.withDefaults()
	st, grey := eng.Store(), eng.Greylist()
	var n Counts
	traps := false
	err := parse(r, opt, &n, func(e entry) error {
		switch {
		case e.host != nil:
			c, err := eng.Import(*e.host)
			if err != nil {
				return err
			}
			switch c {
			case classify.Stored:
				n.count(e)
			case classify.Stood:
				n.Stood++
			case classify.Lapsed:
				n.Expired++
			}
		case e.trap != "":
			if err := st.AddTrap(e.trap); err != nil {
				return err
			}
			traps = true
			n.count(e)
		default:
			ok, err := grey.Import(e.client, e.sender, e.rcpt, *e.attempt)
			if err != nil {
				return err
			}
			if !ok {
				n.Expired++
				return nil
			}
			n.count(e)
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if traps {
		// One reload for the whole file, not one per trap.
		if err := eng.Traps().Reload(); err != nil {
			return n, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return n, st.Flush(ctx)
}

// lineError names the line of the file that stopped the import.
type lineError struct {
	format string
	line   int
	err    error
}

func (e *lineError) Error() string {
	return fmt.Sprintf("import --from %s: line %d: %v", e.format, e.line, e.err)
}

func (e *lineError) Unwrap() error { return e.err }

// errTooLong is a line longer than maxLine.
var errTooLong = fmt.Errorf("longer than %d bytes: not a line of this format", maxLine)

// scanError turns a scanner's error after line into a lineError.
func scanError(format string, line int, err error) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return &lineError{format, line + 1, errTooLong}
	}
	return &lineError{format, line + 1, err}
}

// unixTime reads a time_t as both programs print it: decimal seconds.
// 0 is "never set"; a time before 1990 or after 2200 is not one these
// programs wrote.
func unixTime(field, what string) (time.Time, error) {
	n, err := strconv.ParseInt(field, 10, 64)
	switch {
	case err != nil:
		return time.Time{}, fmt.Errorf("%s %s: not a number of seconds", what, clip(field))
	case n == 0:
		return time.Time{}, nil
	case n < 631152000 || n > 7258118400:
		return time.Time{}, fmt.Errorf("%s %d: not a time these programs write (seconds since 1970)", what, n)
	}
	return time.Unix(n, 0), nil
}

// address reads an envelope address as spamd and postgrey keep them,
// with or without angle brackets, into moat's normalised form (the
// greylist folds a sender further when it keys the triplet); the null
// sender is "". ok is false when it is not an address moat could have
// keyed a triplet by.
func address(s string, sender bool) (string, bool) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if s == "" {
		return "", sender
	}
	n, err := smtp.Normalize(s)
	if err != nil {
		return "", false
	}
	return n, true
}

// clip quotes a field for an error message, cut short: it may have been
// written by a sender.
func clip(s string) string {
	if len(s) > 40 {
		return strconv.Quote(s[:40]) + "…"
	}
	return strconv.Quote(s)
}
