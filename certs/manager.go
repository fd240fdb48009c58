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
	"k8s.io/client-go/util/retry"
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
	// RetireAfter is how long CAs replaced by a rotation stay in the
	// caBundle, so that every replica has picked up the new serving
	// certificate before the old one stops being trusted.
	RetireAfter time.Duration
	// Now is the clock certificates are issued and checked by; nil is
	// time.Now.
	Now     func() time.Time
	Metrics *Metrics
	Log     logr.Logger

	missing  map[string]bool // configurations last seen missing, logged once
	retireAt time.Time       // when retired CAs leave the caBundle, if still ahead
}

// Annotations of the Secret.
const (
	// AnnotationManaged marks the Secret kpoguard keeps; it never takes
	// over a Secret without it.
	AnnotationManaged = "kpoguard.io/managed-certificates"
	// AnnotationRotateCA asks for a CA rotation (docs/operations.md, "Key
	// compromise"): set it to a value it has not had, e.g. the date.
	AnnotationRotateCA = "kpoguard.io/rotate-ca"
	// AnnotationCARotated is the AnnotationRotateCA value last acted on.
	AnnotationCARotated = "kpoguard.io/ca-rotated"
	// AnnotationRetireAfter is when the CAs a rotation replaced leave the
	// caBundle (RFC 3339).
	AnnotationRetireAfter = "kpoguard.io/retire-ca-after"
)

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Run syncs once, returning the error that keeps kpoguard from starting,
// then syncs again whenever the Secret or a webhook configuration changes,
// and every interval as a safety net, until ctx ends; stopped closes then.
func (m *Manager) Run(ctx context.Context, every time.Duration) (stopped <-chan struct{}, err error) {
	if err := m.Sync(ctx); err != nil {
		return nil, err
	}
	changed := make(chan struct{}, 1)
	if err := m.watch(ctx, changed); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			wait := every
			if d := m.retireAt.Sub(m.now()); !m.retireAt.IsZero() && d < wait {
				wait = d // retire the old CAs on time, not a poll later
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-time.After(wait):
			}
			if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
				m.Log.Error(err, "serving certificate sync failed; retrying")
			}
		}
	}()
	return done, nil
}

// Sync renews what needs renewing, puts the CAs in the caBundle of the
// webhook configurations that exist, and writes the serving pair to
// CertDir only once every one of those bundles trusts it: a replica never
// serves a certificate the API server would refuse.
func (m *Manager) Sync(ctx context.Context) error {
	now := m.now()
	bundle, retireAfter, err := m.ensureSecret(ctx, now)
	if err != nil {
		m.Metrics.failed(stageSecret)
		return err
	}
	add, drop := bundle[KeyCACert], []byte(nil)
	m.retireAt = time.Time{}
	if now.Before(retireAfter) {
		m.retireAt = retireAfter
		// Replicas that have not picked up the rotation still serve
		// certificates of the retired CAs.
		add = append(slices.Clone(add), bundle[KeyRetiredCAs]...)
	} else {
		drop = bundle[KeyRetiredCAs]
	}
	live, err := m.injectCABundle(ctx, add, drop, now)
	if err != nil {
		m.Metrics.failed(stageInject)
		// A configuration that could not even be read says nothing of
		// trust: the gauge keeps its last reading.
		if len(live) > 0 {
			m.observeServed(live, now)
		}
		return err
	}
	for _, b := range live {
		if !Trusts(b, bundle[KeyTLSCert], now) {
			m.Metrics.failed(stageTrust)
			m.observeServed(live, now)
			return fmt.Errorf("a caBundle of %s does not trust the Secret's serving certificate yet; serving the previous one", m.WebhookConfigurations)
		}
	}
	if err := writeIfChanged(filepath.Join(m.CertDir, KeyTLSCert), bundle[KeyTLSCert]); err != nil {
		m.Metrics.failed(stageWrite)
		return err
	}
	if err := writeIfChanged(filepath.Join(m.CertDir, KeyTLSKey), bundle[KeyTLSKey]); err != nil {
		m.Metrics.failed(stageWrite)
		return err
	}
	m.observeServed(live, now)
	m.Metrics.synced(now)
	return nil
}

// observeServed records whether every live caBundle trusts the certificate
// in CertDir, and when that certificate is due for renewal.
func (m *Manager) observeServed(bundles [][]byte, now time.Time) {
	served, err := os.ReadFile(filepath.Join(m.CertDir, KeyTLSCert))
	if err != nil {
		m.Metrics.served(false, time.Time{})
		return
	}
	trusted := true
	for _, b := range bundles {
		trusted = trusted && Trusts(b, served, now)
	}
	var due time.Time
	if c, err := parseServing(Bundle{KeyTLSCert: served}); err == nil {
		due = RenewalDue(c)
	}
	m.Metrics.served(trusted, due)
}

// ensureSecret renews the Secret's content when due, or rotates the CA
// when asked to. A write that loses to another replica's is dropped and
// the winner's content read instead. It returns the content and when the
// CAs a rotation retired leave the caBundle.
func (m *Manager) ensureSecret(ctx context.Context, now time.Time) (Bundle, time.Time, error) {
	secrets := m.Client.CoreV1().Secrets(m.Namespace)
	for attempt := 0; attempt < 3; attempt++ {
		secret, err := secrets.Get(ctx, m.SecretName, metav1.GetOptions{})
		exists := !apierrors.IsNotFound(err)
		switch {
		case !exists:
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: m.SecretName, Namespace: m.Namespace, Annotations: map[string]string{AnnotationManaged: "true"}},
				Type:       corev1.SecretTypeTLS,
			}
		case err != nil:
			return nil, time.Time{}, fmt.Errorf("reading Secret %s/%s: %w", m.Namespace, m.SecretName, err)
		case secret.Annotations[AnnotationManaged] != "true":
			return nil, time.Time{}, fmt.Errorf("Secret %s/%s exists and kpoguard does not manage it (no %s annotation); remove it or name another Secret",
				m.Namespace, m.SecretName, AnnotationManaged)
		}
		var bundle Bundle
		changed, what := true, "serving certificate renewed"
		if request := secret.Annotations[AnnotationRotateCA]; request != "" && request != secret.Annotations[AnnotationCARotated] {
			bundle, err = RotateCA(Bundle(secret.Data), m.Hosts, m.Lifetimes, now)
			secret.Annotations[AnnotationCARotated] = request
			secret.Annotations[AnnotationRetireAfter] = now.Add(m.RetireAfter).UTC().Format(time.RFC3339Nano)
			what = "CA rotated; the old CAs leave the caBundle at " + secret.Annotations[AnnotationRetireAfter]
		} else {
			bundle, changed, err = Ensure(Bundle(secret.Data), m.Hosts, m.Lifetimes, now)
		}
		if err != nil {
			return nil, time.Time{}, err
		}
		// An unreadable time retires at once: only kpoguard writes it.
		retireAfter, _ := time.Parse(time.RFC3339Nano, secret.Annotations[AnnotationRetireAfter])
		if !changed {
			return bundle, retireAfter, nil
		}
		secret.Data = bundle
		if !exists {
			_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
		} else {
			_, err = secrets.Update(ctx, secret, metav1.UpdateOptions{})
		}
		switch {
		case err == nil:
			m.Log.Info(what, "secret", m.Namespace+"/"+m.SecretName)
			return bundle, retireAfter, nil
		case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
			continue // another replica wrote first: read its result
		case apierrors.IsNotFound(err):
			continue // deleted since the read (a forced renewal): create it anew
		default:
			return nil, time.Time{}, fmt.Errorf("writing Secret %s/%s: %w", m.Namespace, m.SecretName, err)
		}
	}
	return nil, time.Time{}, fmt.Errorf("Secret %s/%s keeps changing under us", m.Namespace, m.SecretName)
}

// injectCABundle puts the CAs of add in every caBundle of both webhook
// configurations, and takes those of drop out, re-reading a configuration
// someone else changed meanwhile. A configuration that does not exist, or
// is deleted between the read and the write, has nothing to inject: it is
// being replaced, or the webhooks are off (break glass), and kpoguard keeps
// serving. It returns the caBundles the API
// server now holds.
func (m *Manager) injectCABundle(ctx context.Context, add, drop []byte, now time.Time) ([][]byte, error) {
	api := m.Client.AdmissionregistrationV1()
	name := m.WebhookConfigurations
	mutating, err := m.inject("mutating", add, drop, now, func() ([]*clientConfig, func() ([]*clientConfig, error), error) {
		c, err := api.MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, err
		}
		return mutatingClientConfigs(c), func() ([]*clientConfig, error) {
			stored, err := api.MutatingWebhookConfigurations().Update(ctx, c, metav1.UpdateOptions{})
			if err != nil {
				return nil, err
			}
			return mutatingClientConfigs(stored), nil
		}, nil
	})
	if err != nil {
		return mutating, err
	}
	validating, err := m.inject("validating", add, drop, now, func() ([]*clientConfig, func() ([]*clientConfig, error), error) {
		c, err := api.ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, err
		}
		return validatingClientConfigs(c), func() ([]*clientConfig, error) {
			stored, err := api.ValidatingWebhookConfigurations().Update(ctx, c, metav1.UpdateOptions{})
			if err != nil {
				return nil, err
			}
			return validatingClientConfigs(stored), nil
		}, nil
	})
	return append(mutating, validating...), err
}

type clientConfig = admissionregistrationv1.WebhookClientConfig

func mutatingClientConfigs(c *admissionregistrationv1.MutatingWebhookConfiguration) []*clientConfig {
	var out []*clientConfig
	for i := range c.Webhooks {
		out = append(out, &c.Webhooks[i].ClientConfig)
	}
	return out
}

func validatingClientConfigs(c *admissionregistrationv1.ValidatingWebhookConfiguration) []*clientConfig {
	var out []*clientConfig
	for i := range c.Webhooks {
		out = append(out, &c.Webhooks[i].ClientConfig)
	}
	return out
}

// inject updates one webhook configuration: read returns its client
// configs and how to write them back, which returns them as stored.
func (m *Manager) inject(kind string, add, drop []byte, now time.Time,
	read func() ([]*clientConfig, func() ([]*clientConfig, error), error)) ([][]byte, error) {
	var live [][]byte
	missing := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live, missing = nil, false
		ccs, write, err := read()
		if apierrors.IsNotFound(err) {
			missing = true
			return nil
		}
		if err != nil {
			return err
		}
		// What the API server has, should the write fail.
		for _, cc := range ccs {
			live = append(live, cc.CABundle)
		}
		changed, bad := false, 0
		for _, cc := range ccs {
			merged, dropped := mergeBundles(add, cc.CABundle, drop, now)
			bad += dropped
			if !bytes.Equal(cc.CABundle, merged) {
				cc.CABundle, changed = merged, true
			}
		}
		if !changed {
			return nil
		}
		stored, err := write()
		if apierrors.IsNotFound(err) {
			// Deleted since the read (helm --force, Argo CD replace):
			// missing like a failed read, not a failed sync.
			live, missing = nil, true
			return nil
		}
		if err != nil {
			return err
		}
		if bad > 0 {
			m.Log.Info("dropped caBundle blocks that are not certificates", "configuration", kind+" "+m.WebhookConfigurations, "blocks", bad)
		}
		live = live[:0]
		for _, cc := range stored {
			live = append(live, cc.CABundle)
		}
		return nil
	})
	if err != nil {
		return live, fmt.Errorf("updating the %s webhook configuration: %w", kind, err)
	}
	if m.missing == nil {
		m.missing = map[string]bool{}
	}
	if missing != m.missing[kind] {
		m.missing[kind] = missing
		if missing {
			m.Log.Info("webhook configuration absent: no caBundle to keep until it is back", "configuration", kind+" "+m.WebhookConfigurations)
		} else {
			m.Log.Info("webhook configuration back: caBundle kept", "configuration", kind+" "+m.WebhookConfigurations)
		}
	}
	return live, nil
}

// mergeBundles is the CAs of first, then those of second not in first,
// without the CAs of drop, expired ones or anything that is not a
// certificate: a replica with an older view of the Secret never removes a
// newer CA, and one bad block costs only itself. It also returns how many
// blocks of second did not parse.
func mergeBundles(first, second, drop []byte, now time.Time) ([]byte, int) {
	a, _ := decodeGoodCerts(first)
	b, bad := decodeGoodCerts(second)
	dropped, _ := decodeGoodCerts(drop)
	var out []*x509.Certificate
	for _, c := range append(a, b...) {
		if now.Before(c.NotAfter) && !slices.ContainsFunc(out, c.Equal) && !slices.ContainsFunc(dropped, c.Equal) {
			out = append(out, c)
		}
	}
	return encodeCerts(out), bad
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
