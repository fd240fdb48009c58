package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// A LimitRange's defaults land first (LimitRanger runs before webhooks);
// kpoguard fills only what is still missing, and the result passes the
// LimitRange's max, checked after the webhooks.
func TestLimitRangeDefaultsLandFirst(t *testing.T) {
	ns := "limitrange-team"
	if err := cluster.CreateNamespace(t.Context(), ns, nil); err != nil {
		t.Fatal(err)
	}
	_, err := cluster.Client.CoreV1().LimitRanges(ns).Create(t.Context(), &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type:           corev1.LimitTypeContainer,
			Default:        corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("300m")},
			DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")},
			Max:            corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := cluster.Client.CoreV1().Pods(ns).Create(t.Context(), sandbox.TaskPod("limited"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the pod: %v", err)
	}
	res := pod.Spec.Containers[0].Resources
	expectFields(t, []field{
		{"cpu limit (the LimitRange's default)", res.Limits.Cpu().String(), "300m"},
		// requests-equal-limits raised the LimitRange's 200m request.
		{"cpu request", res.Requests.Cpu().String(), "300m"},
		{"memory limit (kpoguard's default)", res.Limits.Memory().String(), "2Gi"},
		{"memory request", res.Requests.Memory().String(), "2Gi"},
	})
	if pod.Annotations["kubernetes.io/limit-ranger"] != "LimitRanger plugin set: cpu request for container base; cpu limit for container base" {
		t.Errorf("limit-ranger annotation = %q", pod.Annotations["kubernetes.io/limit-ranger"])
	}
	if strings.Contains(pod.Annotations["kpoguard.io/mutations"], "limits[cpu]") {
		t.Errorf("kpoguard set a cpu limit the LimitRange had set: %s", pod.Annotations["kpoguard.io/mutations"])
	}
}

// A sidecar injector that runs after kpoguard adds a container; the API
// server calls kpoguard again (reinvocationPolicy: IfNeeded), the sidecar
// gets the defaults, and nothing is applied twice.
func TestReinvocationGivesInjectedSidecarsDefaults(t *testing.T) {
	injector := admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		var pod corev1.Pod
		if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		for _, c := range pod.Spec.Containers {
			if c.Name == "log-shipper" {
				return admission.Allowed("already injected")
			}
		}
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "log-shipper", Image: "fluent-bit:3"})
		patched, _ := json.Marshal(pod)
		return admission.PatchResponseFromRaw(req.Object.Raw, patched)
	})
	wio := cluster.Env.WebhookInstallOptions
	url := serveTestWebhooks(t, map[string]admission.Handler{"/inject": injector}) + "/inject"
	never, ignore, none := admissionregistrationv1.NeverReinvocationPolicy, admissionregistrationv1.Ignore, admissionregistrationv1.SideEffectClassNone
	// Configurations are called in name order: "kpoguard" first, then this.
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-sidecar-injector"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.sidecar.test",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: wio.LocalServingCAData},
			Rules:                   cluster.Webhooks.Mutating.Webhooks[0].Rules,
			ObjectSelector:          cluster.Webhooks.Mutating.Webhooks[0].ObjectSelector,
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"sidecars": "on"}},
			FailurePolicy:           &ignore,
			ReinvocationPolicy:      &never,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	reg := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := reg.Create(t.Context(), cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Delete(context.Background(), cfg.Name, metav1.DeleteOptions{}) })
	ns := "sidecar-team"
	if err := cluster.CreateNamespace(t.Context(), ns, map[string]string{"sidecars": "on"}); err != nil {
		t.Fatal(err)
	}

	var pod *corev1.Pod
	waitUntil(t, "the injector is called", func() bool {
		p, err := cluster.Client.CoreV1().Pods(ns).Create(t.Context(), sandbox.TaskPod("with-sidecar"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		pod = p
		return err == nil && len(p.Spec.Containers) == 2
	})
	shipper := pod.Spec.Containers[1].Resources
	if shipper.Limits.Cpu().String() != "1" || shipper.Requests.Memory().String() != "2Gi" {
		t.Errorf("injected sidecar resources = %+v, want the default pod size", shipper)
	}
	if n := len(pod.Spec.Containers[0].EnvFrom); n != 1 {
		t.Errorf("base container has %d envFrom entries, want 1", n)
	}
	mutations := pod.Annotations["kpoguard.io/mutations"]
	for _, want := range []string{"spec.containers[0].resources.limits[cpu]=1", "spec.containers[1].resources.limits[cpu]=1"} {
		if strings.Count(mutations, want) != 1 {
			t.Errorf("mutations annotation has %q %d times, want once:\n%s", want, strings.Count(mutations, want), mutations)
		}
	}
}

// Warn-mode findings reach the DAG author as kubectl Warning lines.
func TestWarnModeShowsKubectlWarnings(t *testing.T) {
	doc := strings.Replace(readFile(t, repoRoot+"/examples/policy.yaml"), "noPersistentVolumes:\n      mode: enforce", "noPersistentVolumes:\n      mode: warn", 1)
	setPolicy(t, doc)
	r := kubectl(t, "", "create", "--dry-run=server", "-f", ownFixture("10-pvc-task.yaml"))
	if r.code != 0 {
		t.Fatalf("kubectl create: exit %d: %s", r.code, r.stderr)
	}
	want := `Warning: kpoguard [no-persistent-volumes] volume "test-volume" (spec.volumes[0].persistentVolumeClaim): PersistentVolumes are not supported for task pods`
	if !strings.Contains(r.stderr, want) {
		t.Errorf("kubectl stderr lacks %q:\n%s", want, r.stderr)
	}
}

// kpoguardClient posts straight to kpoguard's webhook port, as anything
// that reaches it could, trusting its serving certificate.
func kpoguardClient() (*http.Client, *x509.CertPool) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cluster.Env.WebhookInstallOptions.LocalServingCAData)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, pool
}

// postReview posts a hand-written AdmissionReview to one of kpoguard's
// webhook paths and returns its response.
func postReview(t *testing.T, path string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	client, _ := kpoguardClient()
	resp, err := client.Post(cluster.Kpoguard.URL(path), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil || review.Response == nil {
		t.Fatalf("%s answered %s with no AdmissionReview response: %v", path, resp.Status, err)
	}
	return review.Response
}

// A malformed AdmissionReview posted straight to kpoguard gets a 400.
func TestMalformedAdmissionReview(t *testing.T) {
	client, pool := kpoguardClient()
	for _, body := range []string{`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":`, `not json`} {
		resp, err := client.Post(cluster.Kpoguard.URL("/validate-pods"), "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		var review admissionv1.AdmissionReview
		err = json.NewDecoder(resp.Body).Decode(&review)
		resp.Body.Close()
		if err != nil || review.Response == nil || review.Response.Allowed || review.Response.Result.Code != http.StatusBadRequest {
			t.Errorf("body %q: response %+v (%v), want a 400 refusal", body, review.Response, err)
		}
	}
	// TLS below 1.2 is refused.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Post(cluster.Kpoguard.URL("/validate-pods"), "application/json", bytes.NewBufferString("{}")); err == nil {
		resp.Body.Close()
		t.Error("TLS 1.1 accepted")
	}
}

// kpoguard reports when the certificate it serves expires.
func TestServingCertificateExpiryMetric(t *testing.T) {
	expiry := metric(t, "kpoguard_serving_certificate_expiry_timestamp_seconds")
	if now := float64(time.Now().Unix()); expiry <= now || expiry > now+10*365*24*3600 {
		t.Errorf("serving certificate expiry %v, want a time in the next ten years", expiry)
	}
}
