package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	admissionregistrationclient "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/certs"
	"github.com/kpoguard/kpoguard/internal/sandbox"
	"github.com/kpoguard/kpoguard/review"
)

// Certificate upkeep under what operators do, with two self-managed
// replicas behind a round-robin proxy, whose clocks run 90 seconds ahead
// of the API server's, and a task pod created every 50ms throughout:
//
//   - the release switched from cert-manager: the cert-manager Secret is
//     left alone, its CA stays in the caBundle, a bad block there goes;
//   - both webhook configurations deleted and recreated without caBundle
//     (helm upgrade --force, Argo CD): the caBundle is back within 2s;
//   - break glass: configurations deleted, both replicas restarted while
//     they are absent (they start and stay ready), then restored;
//   - a CA rotation asked for on the Secret: the new CA is served by both
//     replicas and the old one leaves the caBundle, no admission failing;
//   - a third kpoguard, keeping no certificates, is not ready while its
//     --cert-dir holds an expired certificate, and ready again after.
//
// The replicas' own /metrics close it: every sync succeeded, and the
// caBundle trusts what each serves.
//
// Every pod created outside the two windows where the configurations are
// missing or have no caBundle yet must come out mutated; pods in those
// windows pass unguarded (the configurations are gone) or are refused
// (fail closed), and are only counted.
func TestSelfManagedCertificateUpkeep(t *testing.T) {
	const release, ns, optIn = "kpoguard-upkeep", "upkeep-team", "kpoguard.io/upkeep"
	if err := cluster.CreateNamespace(t.Context(), ns, map[string]string{optIn: "true"}); err != nil {
		t.Fatal(err)
	}
	// Only the replicas under test may mutate pods there: a pod admitted
	// mutated is then their work.
	excludeFromSuiteWebhooks(t, ns)
	secrets := cluster.Client.CoreV1().Secrets(sandbox.KpoguardNamespace)

	// Mode switch: the Secret cert-manager wrote for this release stays
	// where it was; the chart's self-managed mode names another.
	certManagerSecret := certManagerLeftovers(t, release)
	args := chartArgs(t, release, "--set", "certManager.enabled=false")
	secretName := strings.TrimPrefix(args["--self-managed-certs"], sandbox.KpoguardNamespace+"/")
	if secretName == "" || secretName == certManagerSecret.Name {
		t.Fatalf("self-managed mode keeps Secret %q, cert-manager's is %q: they must differ", secretName, certManagerSecret.Name)
	}

	// Two replicas on loopback, both keeping the certificates, and a proxy
	// handing the API server's connections to each in turn.
	ports := []int{mustFreePort(t), mustFreePort(t)}
	proxy, connections := roundRobin(t, ports...)
	configs := selfManagedConfigurations(release, "https://127.0.0.1:"+strconv.Itoa(proxy), optIn)
	// What the cert-manager release left in the caBundle: its CA, and a
	// block that is no certificate.
	garbage := "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
	leftover := append([]byte(garbage), certManagerSecret.Data["ca.crt"]...)
	m, v := configs()
	for i := range m.Webhooks {
		m.Webhooks[i].ClientConfig.CABundle = leftover
	}
	for i := range v.Webhooks {
		v.Webhooks[i].ClientConfig.CABundle = leftover
	}
	reg := installWebhookConfigurations(t, m, v)

	kubeconfig := selfManagedKubeconfig(t, release)
	policy := releasePolicy(t, args["--policy-configmap"])
	replicas := make([]*sandbox.Process, 2)
	for i, port := range ports {
		replicas[i] = &sandbox.Process{
			Binary: cluster.Kpoguard.Binary, Kubeconfig: kubeconfig, PolicyConfigMap: policy,
			CertDir: t.TempDir(), Host: "127.0.0.1", Port: port,
			LogPath: filepath.Join(t.TempDir(), "kpoguard.log"),
			ExtraArgs: []string{"--self-managed-certs", sandbox.KpoguardNamespace + "/" + secretName,
				"--cert-hosts", "127.0.0.1", "--webhook-configurations", args["--webhook-configurations"],
				// A poll far slower than the 2s the caBundle must be
				// back in: the watch brings it back, not the poll.
				"--cert-sync", "10s", "--cert-clock-offset", "90s",
				// Retire the old CAs after two polls (20s), not the
				// 15-minute default floor.
				"--retire-ca-after", "0s",
				"--registry-ca-file", cluster.RegistryCAFile},
		}
		if err := replicas[i].Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(replicas[i].Stop)
	}
	logs := func() string { return "replica 0:\n" + replicas[0].Logs() + "\nreplica 1:\n" + replicas[1].Logs() }
	bundleBack := func() time.Duration {
		t.Helper()
		start := time.Now()
		for deadline := start.Add(10 * time.Second); !trustedByAll(t, reg, release, servedBy(t, ports...)...); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the caBundle does not trust both replicas' certificates after 10s\n%s", logs())
			}
		}
		return time.Since(start)
	}
	bundleBack()

	// The switch kept cert-manager's CA and dropped only the bad block;
	// the served certificate comes from the skewed clock, and was
	// accepted.
	for i, b := range bundlesOf(t, reg, release) {
		if !strings.Contains(string(b), strings.TrimSpace(string(certManagerSecret.Data["ca.crt"]))) || strings.Contains(string(b), garbage) {
			t.Errorf("caBundle %d lost cert-manager's CA or kept the bad block", i)
		}
	}
	served := parseCert(t, servedBy(t, ports[0])[0])
	if skew := served.NotBefore.Sub(time.Now().Add(-time.Hour)); skew < 60*time.Second {
		t.Errorf("the served certificate is valid from %v, not from the replicas' clock 90s ahead (%v)", served.NotBefore, skew)
	}

	pods := streamPods(t, ns, 50*time.Millisecond)
	time.Sleep(2 * time.Second)

	// Replaced: both configurations deleted and recreated without
	// caBundle, as helm upgrade --force and Argo CD's replace do.
	from := time.Now()
	deleteConfigurations(t, release)
	m, v = configs()
	createConfigurations(t, m, v)
	back := bundleBack()
	pods.unguarded(from, time.Now())
	t.Logf("replaced configurations: caBundle back %v after recreation", back)
	if back > 2*time.Second {
		t.Errorf("caBundle back %v after recreation, want within 2s", back)
	}
	time.Sleep(2 * time.Second)

	// Break glass, as docs/operations.md says: delete the configurations;
	// replicas restarted meanwhile start and stay ready; then restore.
	from = time.Now()
	if r := kubectl(t, "", "delete", "validatingwebhookconfiguration,mutatingwebhookconfiguration", release); r.code != 0 {
		t.Fatalf("kubectl delete: %s", r.stderr)
	}
	for _, r := range replicas {
		r.Stop()
		if err := r.Start(t.Context()); err != nil {
			t.Fatalf("a replica restarted during break glass: %v", err)
		}
	}
	time.Sleep(time.Second)
	for i, r := range replicas {
		if code := readyz(t, r); code != http.StatusOK {
			t.Errorf("replica %d during break glass: /readyz %d", i, code)
		}
		if !strings.Contains(r.Logs(), "webhook configuration absent") {
			t.Errorf("replica %d did not log the absent configurations", i)
		}
	}
	m, v = configs()
	restored := time.Now()
	createConfigurations(t, m, v)
	back = bundleBack()
	pods.unguarded(from, time.Now())
	t.Logf("break glass restored: caBundle back %v after recreation (%v after the delete)", back, time.Since(from).Round(time.Millisecond))
	if time.Since(restored) > 3*time.Second {
		t.Errorf("caBundle back %v after the restore, want within 2s", back)
	}
	time.Sleep(2 * time.Second)

	// CA rotation, asked for on the Secret; no admission may fail.
	before, err := secrets.Get(t.Context(), secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldServing := servedBy(t, ports...)
	rotateStart := time.Now()
	if r := kubectl(t, "", "annotate", "secret", "-n", sandbox.KpoguardNamespace, secretName,
		certs.AnnotationRotateCA+"="+time.Now().UTC().Format(time.RFC3339)); r.code != 0 {
		t.Fatalf("kubectl annotate: %s", r.stderr)
	}
	var after *corev1.Secret
	var switched time.Duration // until both replicas serve from the new CA
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		after, err = secrets.Get(t.Context(), secretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := servedBy(t, ports...)
		rotated := string(after.Data["ca.crt"]) != string(before.Data["ca.crt"])
		for _, s := range now {
			rotated = rotated && certs.Trusts(after.Data["ca.crt"], s, time.Now()) && !certs.Trusts(before.Data["ca.crt"], s, time.Now())
		}
		if rotated && switched == 0 {
			switched = time.Since(rotateStart)
		}
		retired := true
		for _, b := range bundlesOf(t, reg, release) {
			for _, s := range oldServing {
				retired = retired && !certs.Trusts(b, s, time.Now())
			}
		}
		if rotated && retired && trustedByAll(t, reg, release, now...) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: CA rotated and served by both %v, old CA out of the caBundle %v\n%s", rotated, retired, logs())
		}
	}
	t.Logf("CA rotation: the new CA served by both replicas %v after the request, the old CA out of every caBundle after %v",
		switched.Round(time.Millisecond), time.Since(rotateStart).Round(time.Millisecond))
	if switched > 5*time.Second {
		t.Errorf("the replicas took %v to serve from the new CA: the Secret's watch should bring it in a second", switched)
	}
	if retired := time.Since(rotateStart); retired < 20*time.Second {
		t.Errorf("the old CA left the caBundle %v after the request, before two --cert-sync (20s)", retired)
	}
	time.Sleep(2 * time.Second)
	pods.stop()

	counted, wrong, windows := pods.tally()
	t.Logf("%d task pods created outside the two windows, %d wrong; in the windows %d mutated, %d unguarded, %d refused",
		counted, len(wrong), windows.mutated, windows.unguarded, windows.refused)
	if len(wrong) > 0 {
		t.Errorf("%d pods not admitted mutated outside the windows, e.g. %s\n%s", len(wrong), wrong[0], logs())
	}
	if counted < 100 {
		t.Errorf("only %d pods counted", counted)
	}
	for i, n := range connections {
		if n.Load() == 0 {
			t.Errorf("the proxy never connected the API server to replica %d", i)
		}
	}

	// Mode switch, the end: cert-manager's Secret untouched throughout.
	if got, err := secrets.Get(t.Context(), certManagerSecret.Name, metav1.GetOptions{}); err != nil || got.ResourceVersion != certManagerSecret.ResourceVersion {
		t.Errorf("cert-manager's Secret changed: %v", err)
	}

	// The replicas' own metrics (since their restart at break glass):
	// both answered the API server, every sync succeeded, and the caBundle
	// trusts what each serves.
	for i, r := range replicas {
		for series, want := range map[string]float64{
			"kpoguard_certificate_bundle_trusts_serving":                                1,
			`kpoguard_certificate_sync_errors_total{stage="secret"}`:                    0,
			`kpoguard_certificate_sync_errors_total{stage="inject"}`:                    0,
			`kpoguard_certificate_sync_errors_total{stage="trust"}`:                     0,
			`kpoguard_certificate_sync_errors_total{stage="write"}`:                     0,
			`kpoguard_admission_requests_total{decision="error",webhook="mutate-pods"}`: 0,
		} {
			if got, err := r.Metric(series); err != nil || got != want {
				t.Errorf("replica %d: %s = %v (%v), want %v", i, series, got, err, want)
			}
		}
		synced, err := r.Metric("kpoguard_certificate_last_successful_sync_timestamp_seconds")
		if ahead := time.Until(time.Unix(int64(synced), 0)); err != nil || ahead < 70*time.Second || ahead > 100*time.Second {
			t.Errorf("replica %d: last successful sync %v from now (%v), want about 90s ahead (its clock) and recent", i, ahead, err)
		}
		due, err := r.Metric("kpoguard_certificate_renewal_due_timestamp_seconds")
		if err != nil || !time.Unix(int64(due), 0).After(time.Now()) {
			t.Errorf("replica %d: renewal due %v (%v), want in the future", i, due, err)
		}
		if admissions, err := r.Admissions(); err != nil || admissions["mutate-pods"] == 0 {
			t.Errorf("replica %d answered no mutate-pods request since its restart (%v)", i, err)
		}
		// The chart's RBAC lets it watch what it watches.
		if strings.Contains(r.Logs(), "forbidden") {
			t.Errorf("replica %d was refused something:\n%s", i, r.Logs())
		}
	}

	expiredCertificateNotReady(t, kubeconfig, policy, after)
}

// A replica whose served certificate has expired leaves readiness, and
// comes back when a good one is in place.
func expiredCertificateNotReady(t *testing.T, kubeconfig, policy string, secret *corev1.Secret) {
	t.Helper()
	dir := t.TempDir()
	write := func(cert, key []byte) {
		for name, data := range map[string][]byte{"tls.key": key, "tls.crt": cert} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(secret.Data["tls.crt"], secret.Data["tls.key"])
	k := &sandbox.Process{Binary: cluster.Kpoguard.Binary, Kubeconfig: kubeconfig, PolicyConfigMap: policy,
		CertDir: dir, Host: "127.0.0.1", Port: mustFreePort(t), LogPath: filepath.Join(t.TempDir(), "kpoguard.log"),
		ExtraArgs: []string{"--registry-ca-file", cluster.RegistryCAFile}}
	if err := k.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	expired, _, err := certs.Ensure(nil, []string{"127.0.0.1"}, certs.Lifetimes{CA: 4 * time.Hour, Serving: time.Hour}, time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	write(expired["tls.crt"], expired["tls.key"])
	waitUntil(t, "/readyz fails with an expired certificate", func() bool { return readyz(t, k) == http.StatusServiceUnavailable })
	write(secret.Data["tls.crt"], secret.Data["tls.key"])
	waitUntil(t, "/readyz passes with a good certificate again", func() bool { return readyz(t, k) == http.StatusOK })
}

// excludeFromSuiteWebhooks keeps the suite's own webhooks out of a
// namespace for the test's lifetime, and checks that a task pod created
// there then comes out unmutated.
func excludeFromSuiteWebhooks(t *testing.T, ns string) {
	t.Helper()
	exclude := func(selector *metav1.LabelSelector, add bool) {
		for i, e := range selector.MatchExpressions {
			if e.Key == corev1.LabelMetadataName && e.Operator == metav1.LabelSelectorOpNotIn {
				values := slices.DeleteFunc(slices.Clone(e.Values), func(v string) bool { return v == ns })
				if add {
					values = append(values, ns)
				}
				selector.MatchExpressions[i].Values = values
			}
		}
	}
	update := func(ctx context.Context, add bool) error {
		reg := cluster.Client.AdmissionregistrationV1()
		m, err := reg.MutatingWebhookConfigurations().Get(ctx, cluster.Webhooks.Mutating.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range m.Webhooks {
			exclude(m.Webhooks[i].NamespaceSelector, add)
		}
		if _, err := reg.MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{}); err != nil {
			return err
		}
		v, err := reg.ValidatingWebhookConfigurations().Get(ctx, cluster.Webhooks.Validating.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range v.Webhooks {
			exclude(v.Webhooks[i].NamespaceSelector, add)
		}
		_, err = reg.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{})
		return err
	}
	if err := update(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := update(context.Background(), false); err != nil {
			t.Errorf("restoring the suite's webhooks: %v", err)
		}
	})
	waitUntil(t, "a task pod in "+ns+" passes unmutated", func() bool {
		pod, err := cluster.Client.CoreV1().Pods(ns).Create(t.Context(), sandbox.TaskPod("unguarded-probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && pod.Annotations[review.AnnotationPolicy] == ""
	})
}

// certManagerLeftovers is the Secret cert-manager keeps for a release:
// kubernetes.io/tls, its CA in ca.crt, no kpoguard annotation.
func certManagerLeftovers(t *testing.T, release string) *corev1.Secret {
	t.Helper()
	rendered, stderr, err := helmTemplate(t, release, sandbox.KpoguardNamespace, "--show-only", "templates/certificates.yaml")
	if err != nil {
		t.Fatalf("helm template: %v: %s", err, stderr)
	}
	var name string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var c struct {
			Metadata struct{ Name string }
			Spec     struct{ SecretName string }
		}
		if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
			t.Fatal(err)
		}
		if c.Metadata.Name == release+"-serving" {
			name = c.Spec.SecretName
		}
	}
	issued, _, err := certs.Ensure(nil, []string{release + "." + sandbox.KpoguardNamespace + ".svc"}, certs.Lifetimes{CA: 100 * time.Hour, Serving: 10 * time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sandbox.KpoguardNamespace}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"ca.crt": issued[certs.KeyCACert], "tls.crt": issued[certs.KeyTLSCert], "tls.key": issued[certs.KeyTLSKey]}}
	secrets := cluster.Client.CoreV1().Secrets(sandbox.KpoguardNamespace)
	created, err := secrets.Create(t.Context(), secret, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the serving Certificate's Secret %q: %v", name, err)
	}
	t.Cleanup(func() { _ = secrets.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return created
}

// chartArgs are the kpoguard container's --flag=value arguments the chart
// renders for a release.
func chartArgs(t *testing.T, release string, set ...string) map[string]string {
	t.Helper()
	rendered, stderr, err := helmTemplate(t, release, sandbox.KpoguardNamespace, append(set, "--show-only", "templates/deployment.yaml")...)
	if err != nil {
		t.Fatalf("helm template: %v: %s", err, stderr)
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal([]byte(rendered), &d); err != nil {
		t.Fatal(err)
	}
	args := map[string]string{}
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if k, v, ok := strings.Cut(a, "="); ok {
			args[k] = v
		}
	}
	return args
}

// releasePolicy copies the suite's policy into the ConfigMap a release
// reads (NAMESPACE/NAME), for the test's lifetime, and returns its name.
func releasePolicy(t *testing.T, ref string) string {
	t.Helper()
	_, name, _ := strings.Cut(ref, "/")
	cms := cluster.Client.CoreV1().ConfigMaps(sandbox.KpoguardNamespace)
	policy, err := cms.Get(t.Context(), sandbox.PolicyConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	policy.ObjectMeta = metav1.ObjectMeta{Name: name}
	if _, err := cms.Create(t.Context(), policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cms.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

// selfManagedConfigurations makes the chart's pod webhooks, named for the
// release, pointed at url, for opted-in namespaces only, failing closed
// and without caBundle: a fresh pair each call.
func selfManagedConfigurations(name, url, optIn string) func() (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	return func() (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
		fail := admissionregistrationv1.Fail
		selector := &metav1.LabelSelector{MatchLabels: map[string]string{optIn: "true"}}
		m := cluster.Webhooks.Mutating.DeepCopy()
		m.ObjectMeta = metav1.ObjectMeta{Name: name}
		for i := range m.Webhooks {
			u := url + "/mutate-pods"
			m.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u}
			m.Webhooks[i].NamespaceSelector, m.Webhooks[i].FailurePolicy = selector, &fail
		}
		v := cluster.Webhooks.Validating.DeepCopy()
		v.ObjectMeta = metav1.ObjectMeta{Name: name}
		v.Webhooks = v.Webhooks[:1]
		u := url + "/validate-pods"
		v.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u}
		v.Webhooks[0].NamespaceSelector, v.Webhooks[0].FailurePolicy = selector, &fail
		return m, v
	}
}

func createConfigurations(t *testing.T, m *admissionregistrationv1.MutatingWebhookConfiguration, v *admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	reg := cluster.Client.AdmissionregistrationV1()
	if _, err := reg.MutatingWebhookConfigurations().Create(t.Context(), m, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.ValidatingWebhookConfigurations().Create(t.Context(), v, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func deleteConfigurations(t *testing.T, name string) {
	t.Helper()
	reg := cluster.Client.AdmissionregistrationV1()
	if err := reg.MutatingWebhookConfigurations().Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := reg.ValidatingWebhookConfigurations().Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// bundlesOf is the caBundle of every webhook in both configurations; none
// when they do not exist.
func bundlesOf(t *testing.T, reg admissionregistrationclient.AdmissionregistrationV1Interface, name string) [][]byte {
	t.Helper()
	var out [][]byte
	if m, err := reg.MutatingWebhookConfigurations().Get(t.Context(), name, metav1.GetOptions{}); err == nil {
		for _, w := range m.Webhooks {
			out = append(out, w.ClientConfig.CABundle)
		}
	}
	if v, err := reg.ValidatingWebhookConfigurations().Get(t.Context(), name, metav1.GetOptions{}); err == nil {
		for _, w := range v.Webhooks {
			out = append(out, w.ClientConfig.CABundle)
		}
	}
	return out
}

// trustedByAll reports whether both configurations exist and every
// caBundle in them verifies every served certificate.
func trustedByAll(t *testing.T, reg admissionregistrationclient.AdmissionregistrationV1Interface, name string, served ...[]byte) bool {
	t.Helper()
	bundles := bundlesOf(t, reg, name)
	if len(bundles) < 2 {
		return false
	}
	for _, b := range bundles {
		for _, s := range served {
			if !certs.Trusts(b, s, time.Now()) {
				return false
			}
		}
	}
	return true
}

// servedBy is the certificate each port presents, as PEM.
func servedBy(t *testing.T, ports ...int) [][]byte {
	t.Helper()
	var out [][]byte
	for _, port := range ports {
		conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{InsecureSkipVerify: true}) // the certificate is what is inspected
		if err != nil {
			t.Fatalf("TLS to 127.0.0.1:%d: %v", port, err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: conn.ConnectionState().PeerCertificates[0].Raw}))
		conn.Close()
	}
	return out
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readyz(t *testing.T, k *sandbox.Process) int {
	t.Helper()
	resp, err := http.Get("http://" + k.HealthAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mustFreePort(t *testing.T) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// roundRobin listens on a loopback port and hands each connection to the
// next of the loopback backends in turn, counting the connections each
// got. It stops, closing every connection, when the test ends.
func roundRobin(t *testing.T, backends ...int) (int, []*atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]*atomic.Int64, len(backends))
	for i := range counts {
		counts[i] = new(atomic.Int64)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		open   = map[net.Conn]bool{}
		closed bool
	)
	track := func(conns ...net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			open[c] = true
		}
		return !closed
	}
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for next := 0; ; next++ {
			client, err := l.Accept()
			if err != nil {
				return
			}
			b := next % len(backends)
			server, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(backends[b]))
			if err != nil {
				client.Close() // a replica restarting
				continue
			}
			counts[b].Add(1)
			if !track(client, server) {
				client.Close()
				server.Close()
				return
			}
			wg.Add(2)
			go pipe(server, client)
			go pipe(client, server)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		closed = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).Port, counts
}

// podStream creates a task pod (dry run) every interval and records how
// each came out.
type podStream struct {
	mu       sync.Mutex
	outcomes []podOutcome
	windows  [][2]time.Time
	stop     func()
	stopOnce sync.Once
}

type podOutcome struct {
	start, end time.Time
	err        error
	mutated    bool
}

func streamPods(t *testing.T, ns string, every time.Duration) *podStream {
	t.Helper()
	s := &podStream{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pods := cluster.Client.CoreV1().Pods(ns)
		for i := 0; ; i++ {
			start := time.Now()
			pod, err := pods.Create(ctx, sandbox.TaskPod(fmt.Sprintf("upkeep-%d", i)), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			s.outcomes = append(s.outcomes, podOutcome{start: start, end: time.Now(), err: err, mutated: err == nil && pod.Annotations[review.AnnotationPolicy] != ""})
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}()
	s.stop = func() { s.stopOnce.Do(func() { cancel(); <-done }) }
	t.Cleanup(s.stop)
	return s
}

// unguarded marks a window in which the webhook configurations were
// missing or had no caBundle yet.
func (s *podStream) unguarded(from, to time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.windows = append(s.windows, [2]time.Time{from, to})
}

// windowOutcomes count the pods that overlapped a window by outcome.
type windowOutcomes struct{ mutated, unguarded, refused int }

// tally counts the pods created outside every window and those of them
// not admitted mutated, and the outcomes of the pods in the windows.
func (s *podStream) tally() (counted int, wrong []string, windows windowOutcomes) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.outcomes {
		if slices.ContainsFunc(s.windows, func(w [2]time.Time) bool { return o.start.Before(w[1]) && o.end.After(w[0]) }) {
			switch {
			case o.err != nil:
				windows.refused++
			case o.mutated:
				windows.mutated++
			default:
				windows.unguarded++
			}
			continue
		}
		counted++
		switch {
		case o.err != nil:
			wrong = append(wrong, fmt.Sprintf("pod %d at %s: %v", i, o.start.Format(time.StampMilli), o.err))
		case !o.mutated:
			wrong = append(wrong, fmt.Sprintf("pod %d at %s: admitted unmutated", i, o.start.Format(time.StampMilli)))
		}
	}
	return counted, wrong, windows
}
