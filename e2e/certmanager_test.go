package e2e

import (
	"crypto/tls"
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

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// The chart in cert-manager mode, issued by the real cert-manager
// controllers (bin/cert-manager): the Issuer -> CA Certificate -> CA Issuer
// -> serving Certificate chain becomes Ready, cainjector puts the CA into
// both webhook configurations, kpoguard serves the issued certificate, and
// a forced renewal rotates it while pods are admitted without pause, not
// one admission failing.
func TestCertManagerIssuesAndRotatesServingCertificate(t *testing.T) {
	const release, ns, team = "cm", "cm-system", "cm-team"
	const serving, secretName = release + "-kpoguard-serving", release + "-kpoguard-tls"
	installCertManagerCRDs(t)
	selector := map[string]string{"kpoguard.io/cert-manager": "true"}
	if err := cluster.CreateNamespace(t.Context(), ns, nil); err != nil {
		t.Fatal(err)
	}
	if err := cluster.CreateNamespace(t.Context(), team, selector); err != nil {
		t.Fatal(err)
	}
	startCertManager(t)
	cm, err := cmclient.NewForConfig(cluster.Env.Config)
	if err != nil {
		t.Fatal(err)
	}

	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	issuance, m, v := certManagerRelease(t, release, ns)
	pointWebhooks(m, v, "https://127.0.0.1:"+strconv.Itoa(port), &metav1.LabelSelector{MatchLabels: selector})
	if r := kubectl(t, strings.Join(issuance, "\n---\n"), "apply", "--server-side", "--field-manager=e2e", "-f", "-"); r.code != 0 {
		t.Fatalf("applying the Issuers and Certificates: %s", r.stderr)
	}
	reg := installWebhookConfigurations(t, m, v)

	start := time.Now()
	for _, name := range []string{release + "-kpoguard-ca", serving} {
		waitFor(t, 30*time.Second, "Certificate "+name+" Ready", func() bool {
			c, err := cm.CertmanagerV1().Certificates(ns).Get(t.Context(), name, metav1.GetOptions{})
			return err == nil && hasCondition(c, certmanagerv1.CertificateConditionReady)
		})
	}
	t.Logf("chain Ready in %s", time.Since(start).Round(time.Millisecond))
	secrets := cluster.Client.CoreV1().Secrets(ns)
	secret, err := secrets.Get(t.Context(), secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := secret.Data["ca.crt"]
	waitFor(t, 10*time.Second, "the CA is injected into both webhook configurations", func() bool {
		gotM, errM := reg.MutatingWebhookConfigurations().Get(t.Context(), m.Name, metav1.GetOptions{})
		gotV, errV := reg.ValidatingWebhookConfigurations().Get(t.Context(), v.Name, metav1.GetOptions{})
		if errM != nil || errV != nil {
			return false
		}
		var bundles []string
		for _, w := range gotM.Webhooks {
			bundles = append(bundles, string(w.ClientConfig.CABundle))
		}
		for _, w := range gotV.Webhooks {
			bundles = append(bundles, string(w.ClientConfig.CABundle))
		}
		for _, b := range bundles {
			if b != string(ca) {
				return false
			}
		}
		return true
	})

	certDir := t.TempDir()
	project(t, certDir, secret)
	k := &sandbox.Process{
		Binary: cluster.Kpoguard.Binary, Kubeconfig: cluster.Kubeconfig,
		CertDir: certDir, Host: "127.0.0.1", Port: port,
		LogPath:   filepath.Join(t.TempDir(), "kpoguard.log"),
		ExtraArgs: []string{"--registry-ca-file", cluster.RegistryCAFile},
	}
	if err := k.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	before := servedSerial(t, port, ca)
	if want := serial(t, secret); before != want {
		t.Fatalf("kpoguard serves serial %s, the Secret holds %s", before, want)
	}

	// Dry-run creates reach the webhooks like real ones and leave no pods.
	pods := cluster.Client.CoreV1().Pods(team)
	created, failed := 0, 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pod, err := pods.Create(t.Context(), sandbox.TaskPod(fmt.Sprintf("cm-%d", i)), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			created++
			if err != nil {
				failed++
				t.Errorf("create %d: %v", i, err)
			} else if pod.Annotations["kpoguard.io/policy"] == "" {
				failed++
				t.Errorf("create %d: not mutated", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	// Admissions through the injected CA before the renewal.
	time.Sleep(2 * time.Second)
	renew(t, cm, ns, serving)
	renewed := time.Now()
	// Copy the Secret into the cert dir whenever cert-manager changes it, as
	// the kubelet would project it, until kpoguard serves the new one.
	after := before
	for seen := secret.ResourceVersion; after == before; time.Sleep(100 * time.Millisecond) {
		if time.Since(renewed) > 30*time.Second {
			t.Fatalf("kpoguard still serves serial %s 30s after the renewal\n%s", before, k.Logs())
		}
		s, err := secrets.Get(t.Context(), secretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.ResourceVersion != seen {
			seen = s.ResourceVersion
			project(t, certDir, s)
			secret = s
		}
		after = servedSerial(t, port, ca)
	}
	t.Logf("served serial %s -> %s %s after the renewal", before, after, time.Since(renewed).Round(time.Millisecond))
	// Admissions through the new certificate.
	time.Sleep(2 * time.Second)
	close(stop)
	<-done

	if want := serial(t, secret); after != want {
		t.Errorf("kpoguard serves serial %s, the renewed Secret holds %s", after, want)
	}
	c, err := cm.CertmanagerV1().Certificates(ns).Get(t.Context(), serving, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Status.Revision == nil || *c.Status.Revision != 2 || !hasCondition(c, certmanagerv1.CertificateConditionReady) {
		t.Errorf("the renewed Certificate is not Ready at revision 2: %+v", c.Status)
	}
	admissions, err := k.Admissions()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d dry-run pod creates, %d failed; kpoguard under cert-manager answered %v mutate-pods requests",
		created, failed, admissions["mutate-pods"])
	if admissions["mutate-pods"] < float64(created) {
		t.Errorf("kpoguard under cert-manager answered %v of %d creates", admissions["mutate-pods"], created)
	}
}

// startCertManager runs bin/cert-manager against the sandbox for the
// test's lifetime.
func startCertManager(t *testing.T) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "cert-manager.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := sandbox.Command(filepath.Join(repoRoot, "bin", "cert-manager"), "--kubeconfig", cluster.Kubeconfig)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting bin/cert-manager (built by hack/build-tools.sh): %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("cert-manager's log:\n%s", b)
		}
	})
}

// certManagerRelease renders the chart with certManager.enabled and
// returns its Issuers and Certificates and its webhook configurations.
// The API server reaches kpoguard here at 127.0.0.1, not through the
// Service, so the serving Certificate also names that address.
func certManagerRelease(t *testing.T, release, ns string) ([]string, *admissionregistrationv1.MutatingWebhookConfiguration,
	*admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	rendered, stderr, err := helmTemplate(t, release, ns, "--set", "certManager.enabled=true")
	if err != nil {
		t.Fatalf("helm template: %v: %s", err, stderr)
	}
	var issuance []string
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	for _, doc := range strings.Split(rendered, "\n---\n") {
		switch kindOf(t, doc) {
		case "Issuer":
			issuance = append(issuance, doc)
		case "Certificate":
			var c certmanagerv1.Certificate
			if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
				t.Fatal(err)
			}
			if c.Name == release+"-kpoguard-serving" {
				c.Spec.IPAddresses = []string{"127.0.0.1"}
			}
			out, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			issuance = append(issuance, string(out))
		case "MutatingWebhookConfiguration":
			if err := yaml.Unmarshal([]byte(doc), m); err != nil {
				t.Fatal(err)
			}
		case "ValidatingWebhookConfiguration":
			if err := yaml.Unmarshal([]byte(doc), v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(issuance) != 4 || len(m.Webhooks) == 0 || len(v.Webhooks) == 0 {
		t.Fatalf("rendered %d Issuers and Certificates, %d and %d webhooks", len(issuance), len(m.Webhooks), len(v.Webhooks))
	}
	return issuance, m, v
}

// pointWebhooks sends every webhook to url (at the path it has on the
// Service) for the namespaces selector picks. The mutating webhook fails
// closed, so a TLS failure is a failed admission, not a skipped one.
func pointWebhooks(m *admissionregistrationv1.MutatingWebhookConfiguration, v *admissionregistrationv1.ValidatingWebhookConfiguration,
	url string, selector *metav1.LabelSelector) {
	fail := admissionregistrationv1.Fail
	for i := range m.Webhooks {
		u := url + *m.Webhooks[i].ClientConfig.Service.Path
		m.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u}
		m.Webhooks[i].NamespaceSelector, m.Webhooks[i].FailurePolicy = selector, &fail
	}
	for i := range v.Webhooks {
		u := url + *v.Webhooks[i].ClientConfig.Service.Path
		v.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u}
		v.Webhooks[i].NamespaceSelector = selector
	}
}

func hasCondition(c *certmanagerv1.Certificate, typ certmanagerv1.CertificateConditionType) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == typ && cond.Status == cmmeta.ConditionTrue {
			return true
		}
	}
	return false
}

// renew asks for a new certificate the way `cmctl renew` does: the
// Issuing condition, which cert-manager's trigger would set itself near
// the end of the certificate's life.
func renew(t *testing.T, cm cmclient.Interface, ns, name string) {
	t.Helper()
	c, err := cm.CertmanagerV1().Certificates(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	c.Status.Conditions = append(c.Status.Conditions, certmanagerv1.CertificateCondition{
		Type: certmanagerv1.CertificateConditionIssuing, Status: cmmeta.ConditionTrue,
		Reason: "ManuallyTriggered", Message: "renewal forced by the e2e test", LastTransitionTime: &now,
	})
	if _, err := cm.CertmanagerV1().Certificates(ns).UpdateStatus(t.Context(), c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// project writes the Secret's key pair into kpoguard's cert dir, key
// first: kpoguard keeps serving the old pair until both files match.
func project(t *testing.T, dir string, s *corev1.Secret) {
	t.Helper()
	for _, f := range []string{"tls.key", "tls.crt"} {
		tmp := filepath.Join(dir, "."+f)
		if err := os.WriteFile(tmp, s.Data[f], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

// servedSerial is the serial of the certificate kpoguard serves, verified
// against ca as the API server does.
func servedSerial(t *testing.T, port int, ca []byte) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS to kpoguard with the injected CA: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func serial(t *testing.T, s *corev1.Secret) string {
	t.Helper()
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		t.Fatalf("Secret %s has no certificate", s.Name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// waitFor is waitUntil with a longer deadline, for cert-manager's work.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
	}
}
