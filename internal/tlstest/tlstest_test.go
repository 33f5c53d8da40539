package tlstest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"
)

// The files load as a key pair, the certificate names the host and ends
// when asked, and the key is private to its owner.
func TestWriteCert(t *testing.T) {
	end := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	certFile, keyFile := WriteCert(t, t.TempDir(), "mx.test", end)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.VerifyHostname("mx.test") != nil || !c.NotAfter.Equal(end.UTC()) {
		t.Errorf("certificate for %v until %v, want mx.test until %v", c.DNSNames, c.NotAfter, end)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if got := Cert(t, "a.test", end); len(got.Certificate) != 1 || got.PrivateKey == nil {
		t.Errorf("Cert = %+v", got)
	}
}
