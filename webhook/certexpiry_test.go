package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func writeCert(t *testing.T, path string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The expiry gauge follows the certificate file through a rotation, and
// keeps its last value while the file is unreadable.
func TestCertExpiryFollowsRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tls.crt")
	first := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	writeCert(t, path, first)
	m := NewMetrics()
	d := &Deps{Metrics: m, Log: logr.Discard()}
	go d.watchCertExpiry(t.Context(), path, 5*time.Millisecond)
	waitFor(t, func() bool { return testutil.ToFloat64(m.certExpiry) == float64(first.Unix()) })

	second := first.Add(90 * 24 * time.Hour)
	writeCert(t, path, second)
	waitFor(t, func() bool { return testutil.ToFloat64(m.certExpiry) == float64(second.Unix()) })

	if err := os.WriteFile(path, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if got := testutil.ToFloat64(m.certExpiry); got != float64(second.Unix()) {
		t.Errorf("gauge %v after a bad file, want the last good %v", got, second.Unix())
	}
	if _, err := certNotAfter(path); err == nil {
		t.Error("a non-certificate file parsed")
	}
}
