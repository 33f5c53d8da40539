// Package tlstest makes self-signed certificates for tests: in memory
// (Cert), or as PEM files like an operator's tls.cert and tls.key
// (WriteCert).
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert returns a self-signed certificate for name, valid from an hour ago
// until notAfter, with its key.
func Cert(t testing.TB, name string, notAfter time.Time) tls.Certificate {
	t.Helper()
	der, key := newCert(t, name, notAfter)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// WriteCert writes a self-signed certificate for name, valid from an hour
// ago until notAfter, to dir/cert.pem (mode 0644) and its key to
// dir/key.pem (mode 0600), and returns their paths.
func WriteCert(t testing.TB, dir, name string, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	der, key := newCert(t, name, notAfter)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func newCert(t testing.TB, name string, notAfter time.Time) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}
