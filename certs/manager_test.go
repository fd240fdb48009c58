package certs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const configName = "kpoguard"

func configurations(caBundle []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	url := "https://127.0.0.1:9443/mutate-pods"
	cc := admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle}
	return &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: configName},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "a.kpoguard.io", ClientConfig: cc}, {Name: "b.kpoguard.io", ClientConfig: cc}}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: configName},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "c.kpoguard.io", ClientConfig: cc}}}
}

// testManager is a Manager on a fake API server holding objects, with its
// own metrics and a clock the test moves.
func testManager(t *testing.T, objects ...runtime.Object) (*Manager, *fake.Clientset, *time.Time, *prometheus.Registry) {
	t.Helper()
	client := fake.NewClientset(objects...)
	now := time.Now()
	reg := prometheus.NewRegistry()
	m := &Manager{Client: client, Namespace: "kpoguard", SecretName: "kpoguard-self-managed-tls", Hosts: hosts, Lifetimes: life,
		CertDir: t.TempDir(), WebhookConfigurations: configName, RetireAfter: time.Minute,
		Now: func() time.Time { return now }, Metrics: NewMetrics(reg), Log: testr.New(t)}
	return m, client, &now, reg
}

// liveBundles are the caBundles of every webhook in both configurations.
func liveBundles(t *testing.T, client *fake.Clientset) [][]byte {
	t.Helper()
	var out [][]byte
	m, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), configName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range m.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	v, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), configName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range v.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out
}

// liveBundlesTrusting is how many of the 3 live caBundles (see
// configurations) trust a certificate.
func liveBundlesTrusting(t *testing.T, client *fake.Clientset, cert []byte, now time.Time) int {
	t.Helper()
	n := 0
	for _, b := range liveBundles(t, client) {
		if Trusts(b, cert, now) {
			n++
		}
	}
	return n
}

func served(t *testing.T, m *Manager) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.CertDir, KeyTLSCert))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// Every webhook's caBundle gets the CA, and the serving pair it verifies
// is written; the metrics say so.
func TestSyncInjectsThenServes(t *testing.T) {
	mutating, validating := configurations(nil)
	m, client, now, reg := testManager(t, mutating, validating)
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := liveBundlesTrusting(t, client, served(t, m), *now); n != 3 {
		t.Errorf("%d of 3 caBundles trust the served certificate", n)
	}
	if got := gauge(t, reg, "kpoguard_certificate_bundle_trusts_serving"); got != 1 {
		t.Errorf("bundle_trusts_serving %v", got)
	}
	if got := gauge(t, reg, "kpoguard_certificate_last_successful_sync_timestamp_seconds"); got != float64(now.Unix()) {
		t.Errorf("last successful sync %v, want %d", got, now.Unix())
	}
	if got := gauge(t, reg, "kpoguard_certificate_renewal_due_timestamp_seconds"); got != float64(now.Add(7*time.Hour).Unix()) {
		t.Errorf("renewal due %v, want %d", got, now.Add(7*time.Hour).Unix())
	}
}

// Without webhook configurations (break glass, or a replace in progress)
// there is nothing to inject: the sync succeeds and kpoguard serves.
func TestSyncWithoutConfigurations(t *testing.T) {
	m, _, _, reg := testManager(t)
	if err := m.Sync(context.Background()); err != nil {
		t.Fatalf("Sync without configurations: %v", err)
	}
	if len(served(t, m)) == 0 {
		t.Error("no serving certificate written")
	}
	if got := testutil.ToFloat64(m.Metrics.syncErrors.WithLabelValues(stageInject)); got != 0 {
		t.Errorf("%v inject errors", got)
	}
	if got := gauge(t, reg, "kpoguard_certificate_bundle_trusts_serving"); got != 1 {
		t.Errorf("bundle_trusts_serving %v with no configuration, want 1", got)
	}
}

// An object deleted between the read and the write (helm upgrade --force,
// Argo CD replace, a forced renewal) is missing, not a failed sync: the
// first sync, which kpoguard cannot start without, succeeds, the serving
// pair is written and no error is counted.
func TestSyncObjectDeletedBeforeWrite(t *testing.T) {
	for _, tc := range []struct {
		resource string
		// renew moves the clock past the serving certificate's renewal
		// point after a first sync, so that the Secret is updated.
		renew bool
	}{
		{resource: "mutatingwebhookconfigurations"},
		{resource: "validatingwebhookconfigurations"},
		{resource: "secrets", renew: true},
	} {
		t.Run(tc.resource, func(t *testing.T) {
			mutating, validating := configurations(nil)
			m, client, now, reg := testManager(t, mutating, validating)
			if tc.renew {
				if err := m.Sync(context.Background()); err != nil {
					t.Fatal(err)
				}
				*now = now.Add(8 * time.Hour)
			}
			before, _ := os.ReadFile(filepath.Join(m.CertDir, KeyTLSCert))
			deleted := 0
			client.PrependReactor("update", tc.resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
				if deleted > 0 {
					return false, nil, nil
				}
				deleted++
				u := a.(k8stesting.UpdateAction)
				name := u.GetObject().(metav1.Object).GetName()
				if err := client.Tracker().Delete(u.GetResource(), u.GetNamespace(), name); err != nil {
					t.Fatal(err)
				}
				return true, nil, apierrors.NewNotFound(u.GetResource().GroupResource(), name)
			})
			if err := m.Sync(context.Background()); err != nil {
				t.Fatalf("Sync with the %s deleted before its update: %v", tc.resource, err)
			}
			if deleted != 1 {
				t.Fatalf("%d %s updates refused, want 1: the test did not exercise the race", deleted, tc.resource)
			}
			after := served(t, m)
			if bytes.Equal(after, before) {
				t.Error("no new serving certificate written")
			}
			for _, stage := range []string{stageSecret, stageInject, stageTrust, stageWrite} {
				if got := testutil.ToFloat64(m.Metrics.syncErrors.WithLabelValues(stage)); got != 0 {
					t.Errorf("%v %s errors, want 0", got, stage)
				}
			}
			if got := gauge(t, reg, "kpoguard_certificate_last_successful_sync_timestamp_seconds"); got != float64(now.Unix()) {
				t.Errorf("last successful sync %v, want %d", got, now.Unix())
			}
			if got := gauge(t, reg, "kpoguard_certificate_bundle_trusts_serving"); got != 1 {
				t.Errorf("bundle_trusts_serving %v, want 1", got)
			}
		})
	}
}

// A conflicting write to a configuration is retried on a fresh read, not
// swallowed.
func TestSyncRetriesConflicts(t *testing.T) {
	mutating, validating := configurations(nil)
	m, client, now, _ := testManager(t, mutating, validating)
	conflicts := 2
	client.PrependReactor("update", "validatingwebhookconfigurations", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts == 0 {
			return false, nil, nil
		}
		conflicts--
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "validatingwebhookconfigurations"}, configName, errors.New("changed"))
	})
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := liveBundlesTrusting(t, client, served(t, m), *now); n != 3 {
		t.Errorf("after conflicts, %d of 3 caBundles trust the served certificate", n)
	}
}

// When the caBundle cannot be updated, the serving pair is not written: a
// new certificate the API server does not trust is never served.
func TestSyncServesNothingUntrusted(t *testing.T) {
	mutating, validating := configurations(nil)
	m, client, _, reg := testManager(t, mutating, validating)
	client.PrependReactor("update", "mutatingwebhookconfigurations", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "mutatingwebhookconfigurations"}, configName, errors.New("no"))
	})
	err := m.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "mutating webhook configuration") {
		t.Fatalf("Sync: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.CertDir, KeyTLSCert)); !os.IsNotExist(err) {
		t.Errorf("a serving certificate was written: %v", err)
	}
	if got := testutil.ToFloat64(m.Metrics.syncErrors.WithLabelValues(stageInject)); got != 1 {
		t.Errorf("%v inject errors, want 1", got)
	}
	if got := gauge(t, reg, "kpoguard_certificate_bundle_trusts_serving"); got != 0 {
		t.Errorf("bundle_trusts_serving %v, want 0", got)
	}

	// A bundle that someone else keeps without our CA (the update
	// "succeeds" but changes nothing): held back at the trust check.
	client.PrependReactor("update", "mutatingwebhookconfigurations", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, mutating, nil
	})
	if err := m.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "does not trust") {
		t.Fatalf("Sync: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.CertDir, KeyTLSCert)); !os.IsNotExist(err) {
		t.Errorf("a serving certificate was written: %v", err)
	}
	if got := testutil.ToFloat64(m.Metrics.syncErrors.WithLabelValues(stageTrust)); got != 1 {
		t.Errorf("%v trust errors, want 1", got)
	}
}

// A serving certificate already served, then its CA taken out of a
// caBundle by someone else while kpoguard may not put it back: the trust
// gauge reads what the API server has, 0, not a vacuous 1.
func TestTrustReadFromTheLiveBundleWhenTheUpdateFails(t *testing.T) {
	mutating, validating := configurations(nil)
	m, client, _, reg := testManager(t, mutating, validating)
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := gauge(t, reg, "kpoguard_certificate_bundle_trusts_serving"); got != 1 {
		t.Fatalf("after a good sync: bundle_trusts_serving %v, want 1", got)
	}
	stripped, _ := configurations([]byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"))
	if _, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(context.Background(), stripped, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	client.PrependReactor("update", "mutatingwebhookconfigurations", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "mutatingwebhookconfigurations"}, configName, errors.New("no"))
	})
	if err := m.Sync(context.Background()); err == nil {
		t.Fatal("Sync succeeded with the update forbidden")
	}
	if got := gauge(t, reg, "kpoguard_certificate_bundle_trusts_serving"); got != 0 {
		t.Errorf("bundle_trusts_serving %v with our CA out of the live caBundle, want 0", got)
	}
}

// A Secret that cannot be read fails the sync at its first stage.
func TestSyncSecretErrors(t *testing.T) {
	m, client, _, _ := testManager(t)
	client.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, m.SecretName, errors.New("no"))
	})
	if err := m.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "reading Secret") {
		t.Fatalf("Sync: %v", err)
	}
	if got := testutil.ToFloat64(m.Metrics.syncErrors.WithLabelValues(stageSecret)); got != 1 {
		t.Errorf("%v secret errors, want 1", got)
	}
}

// One unparsable block in a live caBundle is dropped; the other CAs there
// stay.
func TestSyncKeepsGoodBundleBlocks(t *testing.T) {
	other := ensure(t, nil, hosts, time.Now())[KeyCACert]
	bad := []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
	mutating, validating := configurations(append(append([]byte{}, bad...), other...))
	m, client, now, _ := testManager(t, mutating, validating)
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	otherCA, _ := decodeCerts(other)
	for i, b := range liveBundles(t, client) {
		cas, err := decodeCerts(b)
		if err != nil || len(cas) != 2 || !cas[1].Equal(otherCA[0]) || !Trusts(b, served(t, m), *now) {
			t.Errorf("caBundle %d: %d CAs (%v), want ours then the other", i, len(cas), err)
		}
	}
}

// The rotation asked for by annotating the Secret: a new CA joins every
// caBundle, the new serving certificate is served, and once RetireAfter
// has passed the old CA leaves every caBundle and does not come back.
func TestRotateCAOnRequest(t *testing.T) {
	mutating, validating := configurations(nil)
	m, client, now, _ := testManager(t, mutating, validating)
	ctx := context.Background()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := served(t, m)
	secrets := client.CoreV1().Secrets(m.Namespace)
	secret, err := secrets.Get(ctx, m.SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldCA := secret.Data[KeyCACert]
	secret.Annotations[AnnotationRotateCA] = "2026-12-01"
	if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	after := served(t, m)
	if bytes.Equal(after, before) || Trusts(oldCA, after, *now) {
		t.Fatal("the rotation serves the old certificate, or one the old CA signed")
	}
	if o, n := liveBundlesTrusting(t, client, before, *now), liveBundlesTrusting(t, client, after, *now); o != 3 || n != 3 {
		t.Errorf("during the rotation %d of 3 caBundles trust the old certificate and %d the new, want all both", o, n)
	}
	// Asked once, done once.
	if err := m.Sync(ctx); err != nil || !bytes.Equal(served(t, m), after) {
		t.Fatalf("a second sync rotated again: %v", err)
	}
	*now = now.Add(2 * time.Minute)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Minute)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if o, n := liveBundlesTrusting(t, client, before, *now), liveBundlesTrusting(t, client, after, *now); o != 0 || n != 3 {
		t.Errorf("after retirement %d of 3 caBundles trust the old certificate and %d the new, want none and all", o, n)
	}
}

// The operator may move kpoguard.io/retire-ca-after (docs/operations.md):
// earlier retires the old CAs at the next sync (a leaked key, every
// replica already switched), later puts them back until then (a replica
// that missed the rotation gets time).
func TestRetireCAAfterEditedOnTheSecret(t *testing.T) {
	mutating, validating := configurations(nil)
	m, client, now, _ := testManager(t, mutating, validating)
	m.RetireAfter = time.Hour
	ctx := context.Background()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := served(t, m)
	secrets := client.CoreV1().Secrets(m.Namespace)
	annotate := func(key, value string) {
		t.Helper()
		secret, err := secrets.Get(ctx, m.SecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		secret.Annotations[key] = value
		if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	trustingOld := func() int { t.Helper(); return liveBundlesTrusting(t, client, before, *now) }
	annotate(AnnotationRotateCA, "leaked")
	if n := trustingOld(); n != 3 {
		t.Fatalf("%d of 3 caBundles trust the old certificate right after the rotation, an hour before retirement", n)
	}
	*now = now.Add(time.Minute)
	annotate(AnnotationRetireAfter, now.UTC().Format(time.RFC3339Nano))
	if n := trustingOld(); n != 0 {
		t.Errorf("%d caBundles still trust the old certificate after retire-ca-after was moved to now", n)
	}
	annotate(AnnotationRetireAfter, now.Add(10*time.Minute).UTC().Format(time.RFC3339Nano))
	if n := trustingOld(); n != 3 {
		t.Errorf("%d of 3 caBundles trust the old certificate after retire-ca-after was moved later", n)
	}
	if n := liveBundlesTrusting(t, client, served(t, m), *now); n != 3 {
		t.Errorf("%d of 3 caBundles trust the new certificate", n)
	}
}

// A configuration replaced without caBundle (helm upgrade --force, Argo
// CD, break glass) gets it back from the watch, not the next poll.
func TestRunReinjectsReplacedConfigurations(t *testing.T) {
	mutating, validating := configurations(nil)
	m, client, _, _ := testManager(t, mutating, validating)
	m.Now = nil
	ctx, cancel := context.WithCancel(context.Background())
	stopped, err := m.Run(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-stopped }() // before the cert dir goes
	reg := client.AdmissionregistrationV1()
	if err := reg.ValidatingWebhookConfigurations().Delete(ctx, configName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, fresh := configurations(nil)
	if _, err := reg.ValidatingWebhookConfigurations().Create(ctx, fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, err := reg.ValidatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
		if err == nil && Trusts(got.Webhooks[0].ClientConfig.CABundle, served(t, m), time.Now()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the recreated configuration has no caBundle trusting the served certificate after 5s")
		}
	}
}

// A rotation asked for while kpoguard runs is picked up from the Secret's
// watch, and the old CA leaves the caBundle RetireAfter later, not at the
// next poll.
func TestRunRotatesAndRetiresOnTime(t *testing.T) {
	mutating, validating := configurations(nil)
	m, client, _, _ := testManager(t, mutating, validating)
	m.Now, m.RetireAfter = nil, 300*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	stopped, err := m.Run(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-stopped }() // before the cert dir goes
	before := served(t, m)
	secrets := client.CoreV1().Secrets(m.Namespace)
	secret, err := secrets.Get(ctx, m.SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret.Annotations[AnnotationRotateCA] = "now"
	if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for deadline := start.Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		after := served(t, m)
		if !bytes.Equal(after, before) && liveBundlesTrusting(t, client, before, time.Now()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not rotated and retired within 5s")
		}
	}
	if took := time.Since(start); took < m.RetireAfter {
		t.Errorf("the old CA left after %v, before RetireAfter (%v)", took, m.RetireAfter)
	}
}

// Deleting the Secret (a forced renewal) issues a new CA, which joins the
// caBundle beside the old one before its certificate is served.
func TestSecretDeletedRenewsWithoutUntrustedServing(t *testing.T) {
	mutating, validating := configurations(nil)
	m, client, now, _ := testManager(t, mutating, validating)
	ctx := context.Background()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := served(t, m)
	if err := client.CoreV1().Secrets(m.Namespace).Delete(ctx, m.SecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	after := served(t, m)
	if bytes.Equal(after, before) {
		t.Fatal("the deleted Secret's certificate is still served")
	}
	if o, n := liveBundlesTrusting(t, client, before, *now), liveBundlesTrusting(t, client, after, *now); o != 3 || n != 3 {
		t.Errorf("%d of 3 caBundles trust the old certificate and %d the new, want all both", o, n)
	}
}
