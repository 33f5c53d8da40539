package logfollow

import (
	"net/netip"
	"testing"
)

func TestParseClient(t *testing.T) {
	for _, tc := range []struct {
		text, qid, client string
	}{
		{"4C1A22E01F: client=mail.example.com[192.0.2.7]", "4C1A22E01F", "192.0.2.7"},
		{"4C1A22E01F: client=unknown[192.0.2.7]:4711", "4C1A22E01F", "192.0.2.7"},
		{"4C1A22E01F: client=x[2001:db8::7], sasl_method=PLAIN, sasl_username=u", "4C1A22E01F", "2001:db8::7"},
		{"4dFVx30qVdz9sb1: client=x[::ffff:192.0.2.7]", "4dFVx30qVdz9sb1", "192.0.2.7"},
		// Not the record, or not a client's.
		{"NOQUEUE: client=x[192.0.2.7]", "", ""},
		{"4C1A22E01F: client=localhost[127.0.0.1]", "", ""},
		{"4C1A22E01F: client=x y[192.0.2.7]", "", ""},
		{"4C1A22E01F: client=x[192.0.2.7]junk", "", ""},
		{"4C1A22E01F: message-id=<client=x[192.0.2.7]>", "", ""},
		{"4C1A22E01F: reject: RCPT from x[192.0.2.7]: 550 5.1.1 <a@b>: Recipient address rejected: x", "", ""},
	} {
		qid, client, ok := ParseClient(tc.text)
		if tc.qid == "" {
			if ok {
				t.Errorf("ParseClient(%q) = %s, %s; want no record", tc.text, qid, client)
			}
			continue
		}
		if !ok || qid != tc.qid || client != netip.MustParseAddr(tc.client) {
			t.Errorf("ParseClient(%q) = %q, %s, %v; want %s, %s", tc.text, qid, client, ok, tc.qid, tc.client)
		}
	}
}
