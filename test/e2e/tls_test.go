package e2e

import (
	"strings"
	"testing"
	"time"

	"moat/internal/tlstest"
)

// writeCert writes a self-signed certificate and key for mx.example.test.
func writeCert(t *testing.T) (certFile, keyFile string) {
	return tlstest.WriteCert(t, t.TempDir(), "mx.example.test", time.Now().Add(24*time.Hour))
}

// A sending Postfix whose policy demands TLS (smtp_tls_security_level =
// encrypt) gets through greylisting: moat offers STARTTLS to grey hosts,
// defers the first attempt under TLS, and hands the retry to the backend.
func TestTLSMandatorySenderPassesGreylist(t *testing.T) {
	cert, key := writeCert(t)
	b := StartBackend(t, true, alice)
	m := StartMoat(t, moatConfig(`
[greylist]
greet_delay = "0s"
min_retry = "2s"
retry_window = "1h"
[tls]
cert = "`+cert+`"
key = "`+key+`"
`), "{{backend}}", b.Addr)
	s := StartSender(t, m.Addr, "127.0.0.21")
	s.Set(t, "smtp_tls_security_level = encrypt", "smtp_tls_loglevel = 1")

	s.Send(t, "bob@sender.test", alice, "tls only", "hello over TLS")
	s.WaitLog(t, `status=deferred .*451 4\.7\.1`, 20*time.Second)
	msgs := b.WaitMessages(t, alice, 1, 40*time.Second)
	if !strings.Contains(msgs[0], "Subject: tls only") {
		t.Errorf("wrong message delivered:\n%s", msgs[0])
	}
	// The sender's log proves the session was encrypted: Postfix logs
	// the TLS connection it made to moat.
	if n := s.CountLog(`TLS connection established to`); n == 0 {
		t.Errorf("sender logged no TLS connection; log:\n%s", tail(s.Log(), 30))
	}
	if s.CountLog(`TLS is required, but was not offered`) > 0 {
		t.Errorf("sender says moat did not offer TLS")
	}
	waitRecord(t, m, "a passed TLS session of 127.0.0.21", func(rec map[string]any) bool {
		return rec["verdict"] == "passed" && rec["tls"] == true && mentions(rec, "127.0.0.21")
	})
}
