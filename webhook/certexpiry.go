package webhook

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// servedCert reads the first certificate in a PEM file.
func servedCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// certNotAfter reads the expiry of the first certificate in a PEM file.
func certNotAfter(path string) (time.Time, error) {
	cert, err := servedCert(path)
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}

// servedCertValid says why the certificate in path is not valid at now,
// if it is not: the API server refuses an expired or not-yet-valid one,
// so a replica serving it must leave the Service's endpoints.
func servedCertValid(path string, now time.Time) error {
	cert, err := servedCert(path)
	switch {
	case err != nil:
		return fmt.Errorf("serving certificate unreadable: %w", err)
	case now.After(cert.NotAfter):
		return fmt.Errorf("serving certificate expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("serving certificate not valid until %s", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// watchCertExpiry keeps kpoguard_serving_certificate_expiry_timestamp_seconds
// up to date with the serving certificate in path, which rotation replaces
// in place.
func (d *Deps) watchCertExpiry(ctx context.Context, path string, every time.Duration) {
	var lastErr string
	for {
		notAfter, err := certNotAfter(path)
		switch {
		case err == nil:
			d.Metrics.certExpiry.Set(float64(notAfter.Unix()))
			lastErr = ""
		case err.Error() != lastErr:
			lastErr = err.Error()
			d.Log.Error(fmt.Errorf("reading %s: %w", path, err), "serving certificate expiry unknown")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
