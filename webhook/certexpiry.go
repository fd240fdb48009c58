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

// certNotAfter reads the expiry of the first certificate in a PEM file.
func certNotAfter(path string) (time.Time, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return time.Time{}, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
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
