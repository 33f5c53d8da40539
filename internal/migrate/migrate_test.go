package migrate

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/classify"
	"moat/internal/clock"
	"moat/internal/greylist"
	"moat/internal/store"
	"moat/internal/store/bolt"
	"moat/internal/traps"
)

const (
	minRetry = 5 * time.Minute
	whiteTTL = 36 * 24 * time.Hour
	blackTTL = 24 * time.Hour
)

// engine is moat's engine over an empty store, on the real clock: the
// sample files' times are relative to now.
func engine(t *testing.T) (*classify.Engine, store.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "moat.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ts, err := traps.New(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := clock.Real{}
	g := greylist.New(greylist.Config{MinRetry: minRetry, RetryWindow: 4 * time.Hour, PassTTL: whiteTTL}, st, c)
	return classify.New(classify.Config{BlackTTL: blackTTL, WhiteTTL: whiteTTL, GreyTTL: 4 * time.Hour}, st, c, g, ts), st
}

var nowMark = regexp.MustCompile(`@NOW([+-]\d+)@`)

// sample reads a file of testdata, its @NOW±seconds@ marks made times
// around now, and returns it with the now it used.
func sample(t *testing.T, name string) ([]byte, time.Time) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	return nowMark.ReplaceAllFunc(b, func(m []byte) []byte {
		d, _ := strconv.ParseInt(string(nowMark.FindSubmatch(m)[1]), 10, 64)
		return []byte(strconv.FormatInt(now.Unix()+d, 10))
	}), now
}

func importFile(t *testing.T, eng *classify.Engine, name string, opt Options) Counts {
	t.Helper()
	b, _ := sample(t, name)
	checked, err := Check(bytes.NewReader(b), opt, time.Now())
	if err != nil {
		t.Fatalf("Check %s: %v", name, err)
	}
	n, err := Import(eng, bytes.NewReader(b), opt)
	if err != nil {
		t.Fatalf("Import %s: %v", name, err)
	}
	// Check cannot know the expiry moat gives entries the file gives
	// none, so it may count as stored what Import finds expired.
	entries := func(c Counts) int { return c.White + c.Black + c.Traps + c.Triplets + c.Stood + c.Expired }
	if entries(checked) != entries(n) || checked.Skipped != n.Skipped || checked.Traps != n.Traps {
		t.Errorf("Check said %v, Import did %v", checked, n)
	}
	return n
}

func hostOf(t *testing.T, st store.Store, addr string) store.Host {
	t.Helper()
	h, ok, err := st.Host(store.HostPrefix(netip.MustParseAddr(addr)))
	if err != nil || !ok {
		t.Fatalf("%s not stored (%v)", addr, err)
	}
	return h
}

// rcpt is what moat's greylist says to a RCPT from client.
func rcpt(t *testing.T, eng *classify.Engine, client, sender, to string) classify.Action {
	t.Helper()
	d, err := eng.Rcpt(netip.MustParseAddr(client), sender, to)
	if err != nil {
		t.Fatal(err)
	}
	return d.Action
}

func TestSpamdb(t *testing.T) {
	eng, st := engine(t)
	var heard []netip.Prefix // what the kernel bypass would hear of
	eng.OnChange(func(p netip.Prefix) { heard = append(heard, p) })
	_, now := sample(t, "spamdb.txt")
	n := importFile(t, eng, "spamdb.txt", Options{Format: "spamdb"})
	if len(heard) != 3 {
		t.Errorf("the change hook heard of %v, want the 3 hosts stored", heard)
	}
	want := Counts{White: 2, Black: 1, Traps: 2, Triplets: 2, Expired: 2, Skipped: 3}
	if numbers(n) != numbers(want) || len(n.Notes) != 3 {
		t.Errorf("counts %v, want %v", n, want)
	}

	// Whites stay white with the file's times.
	h := hostOf(t, st, "192.0.2.10")
	if h.Class != store.White || h.Source != store.SourceImport || !h.Expires.Equal(now.Add(2592000*time.Second)) ||
		!h.First.Equal(now.Add(-86400*time.Second)) || !h.Last.Equal(now.Add(-84000*time.Second)) {
		t.Errorf("192.0.2.10: %+v", h)
	}
	if v, _ := eng.Classify(netip.MustParseAddr("2001:db8::25")); v.Class != store.White {
		t.Errorf("2001:db8::25: %+v", v)
	}
	if _, ok, _ := st.Host(store.HostPrefix(netip.MustParseAddr("198.51.100.7"))); ok {
		t.Error("an expired WHITE entry was stored")
	}
	// Trapped hosts are black, but not proven bots: they get 4xx.
	h = hostOf(t, st, "192.0.2.66")
	if h.Class != store.Black || h.Source != store.SourceImport || classify.Proves(h.Source) || !h.Expires.Equal(now.Add(86400*time.Second)) {
		t.Errorf("192.0.2.66: %+v", h)
	}
	// Spamtraps are traps, normalised.
	for _, a := range []string{"trap@example.org", "other.trap@example.org"} {
		if !eng.Traps().Is(a) {
			t.Errorf("%s is not a trap", a)
		}
	}
	// Greylist entries are triplets: a sender first seen by spamd 15
	// minutes ago passes its retry on moat, from anywhere in its /24.
	if a := rcpt(t, eng, "203.0.113.77", "alice@example.net", "bob@example.org"); a != classify.Pass {
		t.Errorf("spamd's triplet retried on moat: %v, want pass", a)
	}
	if a := rcpt(t, eng, "203.0.113.6", "", "postmaster@example.org"); a != classify.Pass {
		t.Errorf("spamd's null-sender triplet retried on moat: %v, want pass", a)
	}
	if a := rcpt(t, eng, "203.0.113.5", "mallory@example.net", "bob@example.org"); a != classify.Defer {
		t.Errorf("another sender: %v, want defer", a)
	}
	hist, _ := eng.History(store.HostPrefix(netip.MustParseAddr("192.0.2.66")))
	if len(hist) != 1 || !strings.Contains(hist[0].Reason, "imported from spamd") {
		t.Errorf("history of an imported host: %+v", hist)
	}
}

func TestPostgrey(t *testing.T) {
	eng, st := engine(t)
	n := importFile(t, eng, "postgrey.db.txt", Options{Format: "postgrey"})
	want := Counts{Triplets: 4, Expired: 1, Skipped: 1}
	if numbers(n) != numbers(want) {
		t.Errorf("postgrey.db: %v, want %v", n, want)
	}
	for _, c := range []struct{ client, sender, rcpt string }{
		{"203.0.113.200", "alice@example.net", "bob@example.org"},
		{"198.51.100.3", "", "postmaster@example.org"},
		{"192.0.2.99", "list-bounces@lists.example.com", "carol@example.org"},
		{"2001:db8:1::77", "sender@example.net", "erin@example.org"},
	} {
		if a := rcpt(t, eng, c.client, c.sender, c.rcpt); a != classify.Pass {
			t.Errorf("postgrey's triplet %v retried on moat: %v, want pass", c, a)
		}
	}
	if a := rcpt(t, eng, "192.0.2.99", "old@example.net", "dave@example.org"); a != classify.Defer {
		t.Errorf("a triplet postgrey had forgotten: %v, want defer", a)
	}

	n = importFile(t, eng, "postgrey_clients.db.txt", Options{Format: "postgrey"})
	if want := (Counts{White: 2, Skipped: 1}); numbers(n) != numbers(want) {
		t.Errorf("postgrey_clients.db: %v, want %v", n, want)
	}
	h := hostOf(t, st, "192.0.2.20")
	if h.Class != store.White || h.Source != store.SourceImport || !h.Expires.Equal(h.Last.Add(whiteTTL)) {
		t.Errorf("an auto-whitelisted client: %+v, want white for white_ttl after it was last seen", h)
	}
	hostOf(t, st, "2001:db8::30")
	if _, ok, _ := st.Host(store.HostPrefix(netip.MustParseAddr("192.0.2.21"))); ok {
		t.Error("a client below the auto-whitelist count was stored")
	}
	// With --postgrey-awl 2 it is white too.
	if n := importFile(t, eng, "postgrey_clients.db.txt", Options{Format: "postgrey", AWL: 2}); n.White != 3 {
		t.Errorf("with AWL 2: %v", n)
	}
}

// Plain db_dump writes every byte in hexadecimal (format=bytevalue).
func TestPostgreyByteValue(t *testing.T) {
	eng, st := engine(t)
	hx := func(s string) string { return " " + hex.EncodeToString([]byte(s)) + "\n" }
	last := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	text := "VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n" + hx("192.0.2.40") + hx("9,"+last) + "DATA=END\n"
	if _, err := Import(eng, strings.NewReader(text), Options{Format: "postgrey"}); err != nil {
		t.Fatal(err)
	}
	if h := hostOf(t, st, "192.0.2.40"); h.Class != store.White {
		t.Errorf("%+v", h)
	}
}

// Moat's own stronger evidence stands: an operator's black host stays
// black whatever spamd thought of it.
func TestImportPrecedence(t *testing.T) {
	eng, st := engine(t)
	if err := eng.SetClass(store.HostPrefix(netip.MustParseAddr("192.0.2.10")), store.Black, "operator"); err != nil {
		t.Fatal(err)
	}
	n := importFile(t, eng, "spamdb.txt", Options{Format: "spamdb"})
	if n.White != 1 || n.Stood != 1 {
		t.Errorf("counts %v, want 1 white stored and 1 stood", n)
	}
	if h := hostOf(t, st, "192.0.2.10"); h.Class != store.Black || h.Source != store.SourceOperator {
		t.Errorf("the operator's entry: %+v", h)
	}
}

func TestDumpBytes(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:          "plain",
		`back\\slash`:    `back\slash`,
		`nul\00end`:      "nul\x00end",
		`\7c\2f`:         "|/",
		`\e9t\c3\a9`:     "\xe9t\xc3\xa9",
		`trailing\\`:     `trailing\`,
		`a\5c\5cb`:       `a\\b`,
		`caf\c3\a9@x.fr`: "café@x.fr",
	} {
		got, err := dumpBytes(in, false)
		if err != nil || string(got) != want {
			t.Errorf("dumpBytes(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`\`, `\z1`, `ab\1`, `\g0`} {
		if _, err := dumpBytes(in, false); err == nil {
			t.Errorf("dumpBytes(%q) took it", in)
		}
	}
}

// Hostile or broken input is an error that names its line, and Check
// finds it before anything is stored.
func TestHostileInput(t *testing.T) {
	now := strconv.FormatInt(time.Now().Unix(), 10)
	later := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	white := "WHITE|192.0.2.1|||" + now + "|" + now + "|" + later + "|1|1\n"
	header := "VERSION=3\nformat=print\ntype=btree\nHEADER=END\n"
	huge := strings.Repeat("x", maxLine+10)
	for _, c := range []struct {
		name, format, text string
		line               int
		says               string
	}{
		{"spamdb huge line", "spamdb", white + white + "WHITE|" + huge + "\n", 3, "longer than"},
		{"spamdb bad address", "spamdb", white + "WHITE|999.0.0.1|||" + now + "|0|" + later + "|0|0\n", 2, "not an IP address"},
		{"spamdb bad time", "spamdb", "WHITE|192.0.2.1|||soon|0|" + later + "|0|0\n", 1, "first seen"},
		{"spamdb absurd time", "spamdb", "TRAPPED|192.0.2.1|99999999999\n", 1, "not a time"},
		{"spamdb no expiry", "spamdb", "WHITE|192.0.2.1|||" + now + "|0|0|0|0\n", 1, "without an expiry"},
		{"spamdb unknown type", "spamdb", white + "BLACK|192.0.2.1|" + later + "\n", 2, "entry type"},
		{"spamdb binary", "spamdb", "\x00\x01\x02\xff|\xfe\n", 1, "entry type"},
		{"spamdb fields", "spamdb", "TRAPPED|192.0.2.1\n", 1, "2 fields, want 3"},
		{"spamdb too many fields", "spamdb", "WHITE|192.0.2.1||||" + now + "|0|" + later + "|0|0\n", 1, "10 fields, want 9"},
		{"spamdb white with sender", "spamdb", "WHITE|192.0.2.1|<a@b.c>||" + now + "|0|" + later + "|0|0\n", 1, "sender or recipient"},
		{"spamdb bad count", "spamdb", "WHITE|192.0.2.1|||" + now + "|0|" + later + "|1x|0\n", 1, "count"},
		{"spamdb bad trap", "spamdb", "SPAMTRAP|not an address\n", 1, "not an address"},
		{"spamdb zone", "spamdb", "TRAPPED|fe80::1%eth0|" + later + "\n", 1, "not an IP address"},
		{"spamdb empty", "spamdb", "", 1, "empty file"},
		{"postgrey no header", "postgrey", " 192.0.2.1\n 5," + now + "\nDATA=END\n", 1, "VERSION"},
		{"postgrey bad line", "postgrey", header + " 192.0.2.1\n5," + now + "\nDATA=END\n", 6, "starts with a space"},
		{"postgrey truncated", "postgrey", header + " 192.0.2.1\n 5," + now + "\n", 6, "DATA=END"},
		{"postgrey key alone", "postgrey", header + " 192.0.2.1\nDATA=END\n", 6, "without its value"},
		{"postgrey bad escape", "postgrey", header + " 192.0.2.1\\zz\n 5," + now + "\nDATA=END\n", 5, "hex digits"},
		{"postgrey bad value", "postgrey", header + " 192.0.2.1\n 5;" + now + "\nDATA=END\n", 5, "count,last"},
		{"postgrey bad key", "postgrey", header + " nobody\n 5," + now + "\nDATA=END\n", 5, "neither"},
		{"postgrey bad triplet time", "postgrey", header + " 192.0.2.0/a@b.c/d@e.f\n x," + now + "\nDATA=END\n", 5, "first seen"},
		{"postgrey bad format", "postgrey", "VERSION=3\nformat=json\n", 2, "format=\"json\""},
		{"postgrey huge", "postgrey", header + " " + huge + "\n", 5, "longer than"},
		{"postgrey bad hex", "postgrey", "VERSION=3\nformat=bytevalue\nHEADER=END\n zz\n", 4, "hexadecimal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Check(strings.NewReader(c.text), Options{Format: c.format}, time.Now())
			var le *lineError
			if !errors.As(err, &le) || le.line != c.line || !strings.Contains(err.Error(), c.says) ||
				!strings.Contains(err.Error(), "line "+strconv.Itoa(c.line)+":") {
				t.Errorf("got %v, want an error at line %d saying %q", err, c.line, c.says)
			}
			if err != nil && len(err.Error()) > 300 {
				t.Errorf("the error repeats the hostile line: %d bytes", len(err.Error()))
			}
		})
	}
}

// numbers is a Counts without its notes, to compare.
func numbers(c Counts) [7]int {
	return [7]int{c.White, c.Black, c.Traps, c.Triplets, c.Stood, c.Expired, c.Skipped}
}
