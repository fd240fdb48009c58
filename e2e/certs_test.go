package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	admissionregistrationclient "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpoguard/kpoguard/certs"
	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// kpoguard without cert-manager: it creates its Secret, injects the CA into
// its webhook configurations, and rotates a 15-second serving certificate
// while pods are created without pause; not one admission fails.
func TestSelfManagedCertificatesRotateWithoutFailures(t *testing.T) {
	const name, ns = "kpoguard-selfmanaged", "selfmanaged-team"
	if err := cluster.CreateNamespace(t.Context(), ns, map[string]string{"kpoguard.io/selfmanaged": "true"}); err != nil {
		t.Fatal(err)
	}
	excludeFromSuiteWebhooks(t, ns) // a mutated pod is this kpoguard's work
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	// The chart's webhooks for this namespace only, pointed at the second
	// kpoguard, failing closed, and with no caBundle: kpoguard injects it.
	m, v := selfManagedConfigurations(name, "https://127.0.0.1:"+strconv.Itoa(port), "kpoguard.io/selfmanaged")()
	reg := installWebhookConfigurations(t, m, v)

	// The release's own policy ConfigMap, the only one its RBAC lets it
	// read: the sandbox's policy.
	cms := cluster.Client.CoreV1().ConfigMaps(sandbox.KpoguardNamespace)
	policy, err := cms.Get(t.Context(), sandbox.PolicyConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	policy.ObjectMeta = metav1.ObjectMeta{Name: name + "-policy"}
	if _, err := cms.Create(t.Context(), policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cms.Delete(context.Background(), policy.Name, metav1.DeleteOptions{}) })
	k := &sandbox.Process{
		Binary: cluster.Kpoguard.Binary, Kubeconfig: selfManagedKubeconfig(t, name), PolicyConfigMap: policy.Name,
		CertDir: t.TempDir(), Host: "127.0.0.1", Port: port,
		LogPath: filepath.Join(t.TempDir(), "kpoguard.log"),
		ExtraArgs: []string{"--self-managed-certs", sandbox.KpoguardNamespace + "/" + name + "-self-managed-tls",
			"--cert-hosts", "127.0.0.1", "--webhook-configurations", name,
			"--cert-lifetime", "15s", "--cert-sync", "1s", "--registry-ca-file", cluster.RegistryCAFile},
	}
	if err := k.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)

	waitUntil(t, "the caBundle is injected", func() bool {
		got, err := reg.ValidatingWebhookConfigurations().Get(t.Context(), name, metav1.GetOptions{})
		return err == nil && len(got.Webhooks[0].ClientConfig.CABundle) > 0
	})
	serials := map[string]bool{}
	secrets := cluster.Client.CoreV1().Secrets(sandbox.KpoguardNamespace)
	pods := cluster.Client.CoreV1().Pods(ns)
	created, failed := 0, 0
	for end := time.Now().Add(25 * time.Second); time.Now().Before(end); created++ {
		pod, err := pods.Create(t.Context(), sandbox.TaskPod(fmt.Sprintf("rotating-%d", created)), metav1.CreateOptions{})
		if err != nil {
			failed++
			t.Errorf("create %d: %v", created, err)
		} else if pod.Annotations["kpoguard.io/policy"] == "" {
			t.Errorf("create %d: not mutated", created)
		}
		if s, err := secrets.Get(t.Context(), name+"-self-managed-tls", metav1.GetOptions{}); err == nil {
			if block, _ := pem.Decode(s.Data["tls.crt"]); block != nil {
				if c, err := x509.ParseCertificate(block.Bytes); err == nil {
					serials[c.SerialNumber.String()] = true
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d pods created through %d serving certificates, %d failed", created, len(serials), failed)
	if len(serials) < 3 {
		t.Errorf("saw %d serving certificates in 25s, want at least 3 (two rotations)\n%s", len(serials), k.Logs())
	}
	if got := metric(t, `kpoguard_admission_requests_total{decision="error",webhook="mutate-pods"}`); got != 0 {
		t.Errorf("main kpoguard counted %v errors", got)
	}
}

// selfManagedKubeconfig applies the chart's RBAC for a release (the
// fullname of a release named kpoguard-*) with self-managed certificates
// and these values, and returns a kubeconfig acting as its ServiceAccount:
// kpoguard keeps its Secret and caBundle with what the chart grants it.
func selfManagedKubeconfig(t *testing.T, release string, values ...map[string]any) string {
	t.Helper()
	kubeconfig, err := cluster.ApplyChartRBAC(t.Context(), release, append([]map[string]any{{"certManager": map[string]any{"enabled": false}}}, values...)...)
	if err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// clientOf is a client acting as a kubeconfig's user.
func clientOf(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Two replicas syncing the same Secret at once never fight: whichever
// writes second reads the first one's certificates, and both serve the
// same pair.
func TestSelfManagedReplicasAgree(t *testing.T) {
	const name = "kpoguard-race"
	m := cluster.Webhooks.Mutating.DeepCopy()
	m.ObjectMeta = metav1.ObjectMeta{Name: name}
	m.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kpoguard.io/none": "true"}}
	v := cluster.Webhooks.Validating.DeepCopy()
	v.ObjectMeta = metav1.ObjectMeta{Name: name}
	for i := range v.Webhooks {
		v.Webhooks[i].NamespaceSelector = m.Webhooks[0].NamespaceSelector
	}
	reg := installWebhookConfigurations(t, m, v)
	client := clientOf(t, selfManagedKubeconfig(t, name))
	replica := func() *certs.Manager {
		return &certs.Manager{Client: client, Namespace: sandbox.KpoguardNamespace, SecretName: name + "-self-managed-tls",
			Hosts: []string{"127.0.0.1"}, Lifetimes: certs.Lifetimes{CA: time.Hour, Serving: 10 * time.Minute},
			CertDir: t.TempDir(), WebhookConfigurations: name, Log: logr.Discard()}
	}
	a, b := replica(), replica()
	for round := 0; round < 5; round++ {
		errs := make(chan error, 2)
		for _, r := range []*certs.Manager{a, b} {
			go func() { errs <- r.Sync(t.Context()) }()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	certA, errA := os.ReadFile(filepath.Join(a.CertDir, "tls.crt"))
	certB, errB := os.ReadFile(filepath.Join(b.CertDir, "tls.crt"))
	if errA != nil || errB != nil || !bytes.Equal(certA, certB) {
		t.Fatalf("replicas serve different certificates (%v, %v)", errA, errB)
	}
	secret, err := cluster.Client.CoreV1().Secrets(sandbox.KpoguardNamespace).Get(t.Context(), name+"-self-managed-tls", metav1.GetOptions{})
	if err != nil || !bytes.Equal(secret.Data["tls.crt"], certA) {
		t.Fatalf("the Secret does not hold the served certificate: %v", err)
	}
	got, err := reg.MutatingWebhookConfigurations().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil || !bytes.HasPrefix(got.Webhooks[0].ClientConfig.CABundle, secret.Data["ca.crt"]) {
		t.Errorf("caBundle does not start with the Secret's CA: %v", err)
	}
	if secret.Type != corev1.SecretTypeTLS || secret.Annotations[certs.AnnotationManaged] != "true" {
		t.Errorf("Secret type %s, annotations %v", secret.Type, secret.Annotations)
	}
}

// installWebhookConfigurations creates a pair of webhook configurations
// for the test's lifetime.
func installWebhookConfigurations(t *testing.T, m *admissionregistrationv1.MutatingWebhookConfiguration,
	v *admissionregistrationv1.ValidatingWebhookConfiguration) admissionregistrationclient.AdmissionregistrationV1Interface {
	t.Helper()
	reg := cluster.Client.AdmissionregistrationV1()
	createConfigurations(t, m, v)
	t.Cleanup(func() {
		_ = reg.MutatingWebhookConfigurations().Delete(context.Background(), m.Name, metav1.DeleteOptions{})
		_ = reg.ValidatingWebhookConfigurations().Delete(context.Background(), v.Name, metav1.DeleteOptions{})
	})
	return reg
}

// A Secret kpoguard did not create is never taken over.
func TestSelfManagedRefusesForeignSecret(t *testing.T) {
	const name = "someone-elses-tls"
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sandbox.KpoguardNamespace},
		StringData: map[string]string{"tls.crt": "x", "tls.key": "y"}}
	if _, err := cluster.Client.CoreV1().Secrets(sandbox.KpoguardNamespace).Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A release told to use that Secret may read it, and still leaves it be.
	client := clientOf(t, selfManagedKubeconfig(t, "kpoguard-foreign", map[string]any{"tls": map[string]any{"selfManagedSecretName": name}}))
	m := &certs.Manager{Client: client, Namespace: sandbox.KpoguardNamespace, SecretName: name,
		Hosts: []string{"127.0.0.1"}, Lifetimes: certs.Lifetimes{CA: time.Hour, Serving: 10 * time.Minute},
		CertDir: t.TempDir(), WebhookConfigurations: "unused", Log: logr.Discard()}
	if err := m.Sync(t.Context()); err == nil || !strings.Contains(err.Error(), "kpoguard does not manage it") {
		t.Errorf("Sync over a foreign Secret: %v", err)
	}
	got, err := cluster.Client.CoreV1().Secrets(sandbox.KpoguardNamespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil || string(got.Data["tls.crt"]) != "x" {
		t.Errorf("the foreign Secret changed: %v", err)
	}
}
