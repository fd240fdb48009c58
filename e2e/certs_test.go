package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	// The chart's webhooks for this namespace only, pointed at the second
	// kpoguard, failing closed, and with no caBundle: kpoguard injects it.
	url := "https://127.0.0.1:" + strconv.Itoa(port)
	fail := admissionregistrationv1.Fail
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"kpoguard.io/selfmanaged": "true"}}
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
	v.Webhooks[0].NamespaceSelector = selector
	reg := cluster.Client.AdmissionregistrationV1()
	if _, err := reg.MutatingWebhookConfigurations().Create(t.Context(), m, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.ValidatingWebhookConfigurations().Create(t.Context(), v, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = reg.MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = reg.ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	k := &sandbox.Process{
		Binary: cluster.Kpoguard.Binary, Kubeconfig: cluster.Kubeconfig,
		CertDir: t.TempDir(), Host: "127.0.0.1", Port: port,
		LogPath: filepath.Join(t.TempDir(), "kpoguard.log"),
		ExtraArgs: []string{"--self-managed-certs", sandbox.KpoguardNamespace + "/" + name + "-tls",
			"--cert-hosts", "127.0.0.1", "--webhook-configurations", name,
			"--cert-lifetime", "15s", "--cert-sync", "1s"},
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
		if s, err := secrets.Get(t.Context(), name+"-tls", metav1.GetOptions{}); err == nil {
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
