package smtp

import (
	"strings"
	"testing"
)

// A reload reshapes the words: the banner's split, STARTTLS and the size
// limit change, and what was learnt of the backend stays.
func TestWordsReshape(t *testing.T) {
	w := NewWords("mx.example.org", true, false, 1000)
	w.Learn(Extensions{EightBit: true, Size: 500})
	if w.BannerFirst() == "" || w.Offer().Ext.StartTLS || w.Offer().Ext.Size != 500 {
		t.Fatalf("before: first %q, offer %+v", w.BannerFirst(), w.Offer().Ext)
	}
	w.Reshape(false, true, 100)
	if w.BannerFirst() != "" || w.Banner() != "220 mx.example.org ESMTP Postfix (Debian/GNU)\r\n" {
		t.Errorf("after a reshape without a greet delay: banner %q, first %q; want one line", w.Banner(), w.BannerFirst())
	}
	want := Extensions{EightBit: true, Size: 100, StartTLS: true}
	if got := w.Offer().Ext; got != want {
		t.Errorf("after reshape: offer %+v, want %+v (the backend's 8BITMIME kept, no SMTPUTF8 it never offered)", got, want)
	}
	if !strings.Contains(w.Offer().EHLO(false), "STARTTLS") || strings.Contains(w.Offer().EHLO(true), "STARTTLS") {
		t.Errorf("EHLO after reshape: %q / under TLS %q", w.Offer().EHLO(false), w.Offer().EHLO(true))
	}
}
