package reputation

import (
	"strings"
	"testing"
)

// FuzzParseLine: no line crashes a parser, and a verdict always names a
// valid address.
func FuzzParseLine(f *testing.F) {
	f.Add("rspamd_task_write_log: id: <x>, ip: 192.0.2.1, from: <a@b>, (default: T (reject): [20.00/15.00] []), len: 1")
	f.Add("amavis[1]: (1) Blocked SPAM {X,Y}, [192.0.2.20]:1 <a@b> -> <c@d>, Hits: 9")
	f.Add("postfix/cleanup[1]: Q: milter-reject: END-OF-MESSAGE from unknown[192.0.2.30]: 5.7.1 Gtube pattern;")
	f.Fuzz(func(t *testing.T, line string) {
		for _, format := range []string{FormatRspamd, FormatSpamAssassin, FormatPostfix} {
			if fb, ok := ParseLine(format, line); ok && (!fb.IP.IsValid() || fb.Verdict != Spam && fb.Verdict != Ham || !strings.HasPrefix(fb.Source, format)) {
				t.Fatalf("%s %q: %+v", format, line, fb)
			}
		}
	})
}
