package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Manager keeps the Secret, the local serving files and the webhook
// configurations' caBundle in step.
type Manager struct {
	Client     kubernetes.Interface
	Namespace  string
	SecretName string
	// Hosts are the names (and IPs) the serving certificate must cover.
	Hosts     []string
	Lifetimes Lifetimes
	// CertDir receives tls.crt and tls.key for the webhook server.
	CertDir string
	// WebhookConfigurations names the mutating and validating webhook
	// configurations whose caBundle is kept to the Secret's CAs.
	WebhookConfigurations string
	Log                   logr.Logger
}

// Run syncs once, returning the error that keeps kpoguard from starting,
// then keeps syncing every interval until ctx ends.
func (m *Manager) Run(ctx context.Context, every time.Duration) error {
	if err := m.Sync(ctx); err != nil {
		return err
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
			if err := m.Sync(ctx); err != nil {
				m.Log.Error(err, "serving certificate sync failed; retrying")
			}
		}
	}()
	return nil
}

// Sync renews what needs renewing, then writes the serving pair and the
// caBundle where they belong.
func (m *Manager) Sync(ctx context.Context) error {
	bundle, err := m.ensureSecret(ctx)
	if err != nil {
		return err
	}
	// The CAs reach the API server before a certificate they sign is served.
	if err := m.injectCABundle(ctx, bundle[KeyCACert]); err != nil {
		return err
	}
	if err := writeIfChanged(filepath.Join(m.CertDir, KeyTLSCert), bundle[KeyTLSCert]); err != nil {
		return err
	}
	return writeIfChanged(filepath.Join(m.CertDir, KeyTLSKey), bundle[KeyTLSKey])
}

// AnnotationManaged marks the Secret kpoguard keeps; it never takes over a
// Secret without it.
const AnnotationManaged = "kpoguard.io/managed-certificates"

// ensureSecret renews the Secret's content when due. A write that loses to
// another replica's is dropped and the winner's content read instead.
func (m *Manager) ensureSecret(ctx context.Context) (Bundle, error) {
	secrets := m.Client.CoreV1().Secrets(m.Namespace)
	for attempt := 0; attempt < 3; attempt++ {
		secret, err := secrets.Get(ctx, m.SecretName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: m.SecretName, Namespace: m.Namespace, Annotations: map[string]string{AnnotationManaged: "true"}},
				Type:       corev1.SecretTypeTLS,
			}
		case err != nil:
			return nil, fmt.Errorf("reading Secret %s/%s: %w", m.Namespace, m.SecretName, err)
		case secret.Annotations[AnnotationManaged] != "true":
			return nil, fmt.Errorf("Secret %s/%s exists and kpoguard does not manage it (no %s annotation); remove it or name another Secret",
				m.Namespace, m.SecretName, AnnotationManaged)
		}
		bundle, changed, err := Ensure(Bundle(secret.Data), m.Hosts, m.Lifetimes, time.Now())
		if err != nil {
			return nil, err
		}
		if !changed {
			return bundle, nil
		}
		secret.Data = bundle
		if secret.ResourceVersion == "" {
			_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
		} else {
			_, err = secrets.Update(ctx, secret, metav1.UpdateOptions{})
		}
		switch {
		case err == nil:
			m.Log.Info("serving certificate renewed", "secret", m.Namespace+"/"+m.SecretName)
			return bundle, nil
		case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
			continue // another replica wrote first: read its result
		default:
			return nil, fmt.Errorf("writing Secret %s/%s: %w", m.Namespace, m.SecretName, err)
		}
	}
	return nil, fmt.Errorf("Secret %s/%s keeps changing under us", m.Namespace, m.SecretName)
}

func (m *Manager) injectCABundle(ctx context.Context, ca []byte) error {
	reg := m.Client.AdmissionregistrationV1()
	mutating, err := reg.MutatingWebhookConfigurations().Get(ctx, m.WebhookConfigurations, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the mutating webhook configuration: %w", err)
	}
	var configs []*admissionregistrationv1.WebhookClientConfig
	for i := range mutating.Webhooks {
		configs = append(configs, &mutating.Webhooks[i].ClientConfig)
	}
	if setCABundle(ca, configs...) {
		// A conflict means someone else wrote it; the next sync looks again.
		if _, err := reg.MutatingWebhookConfigurations().Update(ctx, mutating, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("updating the mutating webhook configuration: %w", err)
		}
	}
	validating, err := reg.ValidatingWebhookConfigurations().Get(ctx, m.WebhookConfigurations, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the validating webhook configuration: %w", err)
	}
	configs = configs[:0]
	for i := range validating.Webhooks {
		configs = append(configs, &validating.Webhooks[i].ClientConfig)
	}
	if setCABundle(ca, configs...) {
		if _, err := reg.ValidatingWebhookConfigurations().Update(ctx, validating, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("updating the validating webhook configuration: %w", err)
		}
	}
	return nil
}

// setCABundle adds the Secret's CAs to every client config's bundle,
// keeping any other CA there that has not expired: a replica with an older
// view of the Secret never removes a newer CA. It reports whether any
// bundle changed.
func setCABundle(ca []byte, configs ...*admissionregistrationv1.WebhookClientConfig) bool {
	changed := false
	for _, cc := range configs {
		merged := mergeBundles(ca, cc.CABundle, time.Now())
		if !bytes.Equal(cc.CABundle, merged) {
			cc.CABundle, changed = merged, true
		}
	}
	return changed
}

// mergeBundles is the CAs of first, then those of second not in first,
// without expired ones or anything that is not a certificate.
func mergeBundles(first, second []byte, now time.Time) []byte {
	a, _ := decodeCerts(first)
	b, _ := decodeCerts(second)
	var out []*x509.Certificate
	for _, c := range append(a, b...) {
		if now.Before(c.NotAfter) && !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
	}
	return encodeCerts(out)
}

// writeIfChanged replaces a file atomically when its content differs, so
// the webhook server's watcher never reads half a certificate.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
