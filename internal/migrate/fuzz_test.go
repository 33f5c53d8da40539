package migrate

import (
	"strings"
	"testing"
	"time"
)

// The readers take files written partly by senders: whatever they hold,
// reading never panics, and an error is short and names a line.
func fuzzFormat(f *testing.F, format string, seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		_, err := Check(strings.NewReader(text), Options{Format: format}, time.Now())
		if err != nil && (!strings.Contains(err.Error(), "line ") || len(err.Error()) > 400) {
			t.Errorf("error %q: want a short one naming a line", err)
		}
	})
}

func FuzzSpamdb(f *testing.F) {
	fuzzFormat(f, "spamdb",
		"WHITE|192.0.2.10|||1700000000|1700001500|4102444800|1|14\n",
		"GREY|203.0.113.5|mail.example.net|<alice@example.net>|<bob@example.org>|1700000000|1700014400|1700014400|1|0\n",
		"GREY|203.0.113.9|a|b|<x@example.net>|<y@example.org>|1700000000|1700014400|1700014400|1|0\n",
		"TRAPPED|192.0.2.66|4102444800\nSPAMTRAP|<trap@example.org>\nDOMAIN|example.org\n")
}

func FuzzPostgrey(f *testing.F) {
	fuzzFormat(f, "postgrey",
		"VERSION=3\nformat=print\ntype=btree\nHEADER=END\n 203.0.113.0/alice@example.net/bob@example.org\n 1700000000,1700000900\nDATA=END\n",
		"VERSION=3\nformat=print\nHEADER=END\n 192.0.2.20\n 7,1700000000\n a\\5cb\n 1,2\nDATA=END\n",
		"VERSION=3\nformat=bytevalue\nHEADER=END\n 3139322e302e322e3230\n 372c31373030303030303030\nDATA=END\n")
}
