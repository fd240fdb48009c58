package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func writeCert(t *testing.T, path string, notAfter time.Time) {
	t.Helper()
	writeCertValid(t, path, time.Now().Add(-time.Hour), notAfter)
}

func writeCertValid(t *testing.T, path string, notBefore, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: notBefore, NotAfter: notAfter}
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

// /readyz fails while the served certificate is expired, not yet valid or
// unreadable, by the process's clock, and passes with a good one whatever
// certificate upkeep is doing.
func TestReadinessFollowsServedCertificate(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name                string
		notBefore, notAfter time.Time
		noFile              bool
		want                int
		says                string
	}{
		{name: "valid", notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour), want: http.StatusOK, says: "ok"},
		{name: "expired", notBefore: now.Add(-2 * time.Hour), notAfter: now.Add(-time.Second), want: http.StatusServiceUnavailable, says: "expired"},
		{name: "not yet valid", notBefore: now.Add(time.Minute), notAfter: now.Add(time.Hour), want: http.StatusServiceUnavailable, says: "not valid until"},
		{name: "no certificate", noFile: true, want: http.StatusServiceUnavailable, says: "unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tls.crt")
			if !tc.noFile {
				writeCertValid(t, path, tc.notBefore, tc.notAfter)
			}
			d := newDeps(t, basePolicy)
			started := func(*http.Request) error { return nil }
			rec := httptest.NewRecorder()
			d.readiness(started, path, func() time.Time { return now })(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.says) {
				t.Errorf("/readyz = %d %q, want %d saying %q", rec.Code, rec.Body.String(), tc.want, tc.says)
			}
		})
	}
}

// Readiness keeps its other conditions: a policy, and a started server.
func TestReadinessNeedsPolicyAndServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tls.crt")
	writeCert(t, path, time.Now().Add(time.Hour))
	m := NewMetrics()
	noPolicy := &Deps{Policies: NewPolicyStore(m, logr.Discard()), Metrics: m, Log: logr.Discard()}
	for name, h := range map[string]http.HandlerFunc{
		"no policy":   noPolicy.readiness(func(*http.Request) error { return nil }, path, time.Now),
		"not started": newDeps(t, basePolicy).readiness(func(*http.Request) error { return errors.New("not yet") }, path, time.Now),
	} {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s: /readyz = %d", name, rec.Code)
		}
	}
}
