package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"moat/internal/migrate"
	"moat/internal/store"
)

// ExportVersion is the format of "moat export" files: JSON lines, one
// object each. The first is the header {"type":"moat-export","version":1},
// the last the trailer {"type":"end",…} with the number of entries of each
// type, so a truncated file is refused rather than half imported. In
// between come "host", "trap", "counter", "triplet" and "record" lines, in
// that order. Triplets are exported by ID (the hash the stores key them
// by), not by address: no store keeps the addresses.
const ExportVersion = 1

// ExportLine is one line of an export file.
type ExportLine struct {
	Type    string     `json:"type"`
	Version int        `json:"version,omitempty"` // header
	Created *time.Time `json:"created,omitempty"` // header
	Prefix  string     `json:"prefix,omitempty"`  // host
	Class   string     `json:"class,omitempty"`   // host
	Source  string     `json:"source,omitempty"`  // host
	Reason  string     `json:"reason,omitempty"`  // host
	ID      string     `json:"id,omitempty"`      // triplet
	Count   uint32     `json:"count,omitempty"`   // triplet
	First   *time.Time `json:"first,omitempty"`   // host, triplet
	Last    *time.Time `json:"last,omitempty"`    // host, triplet
	Expires *time.Time `json:"expires,omitempty"` // host, triplet, record
	Addr    string     `json:"addr,omitempty"`    // trap
	Name    string     `json:"name,omitempty"`    // counter
	Value   *int64     `json:"value,omitempty"`   // counter
	Kind    string     `json:"kind,omitempty"`    // record
	Key     string     `json:"key,omitempty"`     // record
	Data    []byte     `json:"data,omitempty"`    // record, base64
	Counts  *Counts    `json:"counts,omitempty"`  // end
}

// Counts says how many entries of each type an export holds or an import
// stored.
type Counts struct {
	Hosts    int `json:"hosts"`
	Traps    int `json:"traps"`
	Counters int `json:"counters"`
	Triplets int `json:"triplets"`
	Records  int `json:"records"`
}

func (c Counts) String() string {
	return fmt.Sprintf("%d hosts, %d traps, %d counters, %d triplets, %d records", c.Hosts, c.Traps, c.Counters, c.Triplets, c.Records)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// Export writes everything st holds to w as an export file. It reads the
// store as it goes, so entries changed meanwhile may or may not be in it.
func Export(st store.Store, w io.Writer) (Counts, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	var n Counts
	var werr error
	put := func(l *ExportLine) bool {
		if werr = enc.Encode(l); werr != nil {
			return false
		}
		return true
	}
	now := time.Now().UTC()
	if !put(&ExportLine{Type: "moat-export", Version: ExportVersion, Created: &now}) {
		return n, werr
	}
	err := st.Hosts(func(h store.Host) bool {
		n.Hosts++
		return put(&ExportLine{Type: "host", Prefix: h.Prefix.String(), Class: h.Class.String(), Source: sourceName(h.Source), Reason: h.Reason,
			First: timePtr(h.First), Last: timePtr(h.Last), Expires: timePtr(h.Expires)})
	})
	if err = errors.Join(err, werr); err != nil {
		return n, err
	}
	traps, err := st.Traps()
	if err != nil {
		return n, err
	}
	for _, a := range traps {
		n.Traps++
		if !put(&ExportLine{Type: "trap", Addr: a}) {
			return n, werr
		}
	}
	counters, err := st.Counters()
	if err != nil {
		return n, err
	}
	for name, v := range counters {
		n.Counters++
		if !put(&ExportLine{Type: "counter", Name: name, Value: &v}) {
			return n, werr
		}
	}
	err = st.Triplets(func(id store.TripletID, a store.Attempt) bool {
		n.Triplets++
		return put(&ExportLine{Type: "triplet", ID: id.String(), Count: a.Count,
			First: timePtr(a.First), Last: timePtr(a.Last), Expires: timePtr(a.Expires)})
	})
	if err = errors.Join(err, werr); err != nil {
		return n, err
	}
	err = st.Records(func(kind, key string, val []byte, exp time.Time) bool {
		n.Records++
		return put(&ExportLine{Type: "record", Kind: kind, Key: key, Data: val, Expires: timePtr(exp)})
	})
	if err = errors.Join(err, werr); err != nil {
		return n, err
	}
	if !put(&ExportLine{Type: "end", Counts: &n}) {
		return n, werr
	}
	return n, bw.Flush()
}

// Import stores every entry of an export file read from r into st,
// replacing what st holds under the same keys and leaving the rest alone
// (a counter is set to the file's value). It checks the file's header and
// trailer, and stops at the first line it cannot use, naming it. What was
// stored before that stays stored.
func Import(st store.Store, r io.Reader) (Counts, error) {
	var n Counts
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	lineNo := 0
	// bad is a line the file should not hold; a store that fails to
	// take a good one is not the file's fault.
	bad := func(format string, a ...any) error {
		return badRequest{fmt.Errorf("import: line %d: "+format, append([]any{lineNo}, a...)...)}
	}
	var counters map[string]int64
	header, end := false, false
	for sc.Scan() {
		lineNo++
		if len(sc.Bytes()) == 0 {
			continue
		}
		if end {
			return n, bad("data after the end line")
		}
		var l ExportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return n, bad("not a JSON object: %v", err)
		}
		if !header {
			if l.Type != "moat-export" {
				return n, bad("not a moat export file (no header line)")
			}
			if l.Version < 1 || l.Version > ExportVersion {
				return n, bad("format version %d: this moat reads version %d", l.Version, ExportVersion)
			}
			header = true
			continue
		}
		var err error
		switch l.Type {
		case "host":
			var h store.Host
			if h.Prefix, err = netip.ParsePrefix(l.Prefix); err != nil {
				return n, bad("host: %v", err)
			}
			if h.Class, err = store.ParseClass(l.Class); err != nil {
				return n, bad("host %s: %v", l.Prefix, err)
			}
			if h.Source, err = store.ParseSource(l.Source); err != nil {
				return n, bad("host %s: %v", l.Prefix, err)
			}
			h.Reason, h.First, h.Last, h.Expires = l.Reason, timeOf(l.First), timeOf(l.Last), timeOf(l.Expires)
			err = st.PutHost(h)
			n.Hosts++
		case "trap":
			if l.Addr == "" {
				return n, bad("trap without address")
			}
			err = st.AddTrap(l.Addr)
			n.Traps++
		case "counter":
			if l.Name == "" || l.Value == nil {
				return n, bad("counter without name or value")
			}
			if counters == nil {
				if counters, err = st.Counters(); err != nil {
					return n, err
				}
			}
			if d := *l.Value - counters[l.Name]; d != 0 {
				err = st.Add(l.Name, d)
			}
			counters[l.Name] = *l.Value
			n.Counters++
		case "triplet":
			id, perr := store.ParseTripletID(l.ID)
			if perr != nil {
				return n, bad("%v", perr)
			}
			err = st.PutTripletID(id, store.Attempt{First: timeOf(l.First), Last: timeOf(l.Last), Count: l.Count, Expires: timeOf(l.Expires)})
			n.Triplets++
		case "record":
			err = st.Put(l.Kind, l.Key, l.Data, timeOf(l.Expires))
			n.Records++
		case "end":
			if l.Counts == nil || *l.Counts != n {
				return n, bad("the end line counts %v, the file holds %v", l.Counts, n)
			}
			end = true
		default:
			return n, bad("unknown type %q", l.Type)
		}
		if err != nil {
			return n, fmt.Errorf("import: line %d: %s: %w", lineNo, l.Type, err)
		}
	}
	if err := sc.Err(); err != nil {
		return n, badRequest{fmt.Errorf("import: after line %d: %w", lineNo, err)}
	}
	if !header {
		return n, badRequest{errors.New("import: empty input: not a moat export file")}
	}
	if !end {
		return n, badRequest{fmt.Errorf("import: the file ends at line %d without its end line: truncated? (%v stored)", lineNo, n)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return n, st.Flush(ctx)
}

// exportRoutes adds GET /v1/export (the export file, streamed) and POST
// /v1/import (an export file as the body; the answer is its Counts; with
// ?from=spamdb or ?from=postgrey, another greylister's file, and the
// answer is migrate.Counts).
func (s *Service) exportRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/export", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		// Once streaming, the status cannot change: a failure shows as
		// a file without its end line, which import refuses.
		Export(s.Eng.Store(), w)
	})
	mux.HandleFunc("POST /v1/import", func(w http.ResponseWriter, r *http.Request) {
		if opt, ok, err := MigrateOptions(r.URL.Query()); ok || err != nil {
			var n migrate.Counts
			if err == nil {
				n, err = migrate.Import(s.Eng, r.Body, opt)
			}
			if err != nil {
				err = badRequest{err}
			}
			reply(w, n, err)
			return
		}
		n, err := Import(s.Eng.Store(), r.Body)
		reply(w, n, err)
	})
}

// MigrateOptions reads the query of an import from another greylister
// (from=spamdb|postgrey, awl=N); ok is false for moat's own export files.
func MigrateOptions(q url.Values) (opt migrate.Options, ok bool, err error) {
	opt.Format = q.Get("from")
	if opt.Format == "" || opt.Format == "moat" {
		return opt, false, nil
	}
	if a := q.Get("awl"); a != "" {
		if opt.AWL, err = strconv.Atoi(a); err != nil || opt.AWL < 1 {
			return opt, true, fmt.Errorf("import: awl=%q: want a number of passes, at least 1", a)
		}
	}
	return opt, true, opt.Check()
}

// MigrateQuery is the query MigrateOptions reads.
func MigrateQuery(opt migrate.Options) string {
	q := url.Values{"from": {opt.Format}}
	if opt.AWL > 0 {
		q.Set("awl", strconv.Itoa(opt.AWL))
	}
	return q.Encode()
}

// sourceName leaves an unknown source out of the export line.
func sourceName(s store.Source) string {
	if s == store.SourceUnknown {
		return ""
	}
	return s.String()
}
