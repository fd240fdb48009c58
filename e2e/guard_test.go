package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// pastAdmission says whether a CONNECT failed where one admission lets
// through does in the sandbox, which has no kubelet: when the API server
// looks for the pod's kubelet, the pod has no node, or its node no address.
func pastAdmission(err string) bool {
	return strings.Contains(err, "does not have a host assigned") || strings.Contains(err, "no preferred addresses found")
}

// guardWebhooks are the worker guard's webhooks as the chart renders them
// with workers.guard.enabled and these values.
func guardWebhooks(t *testing.T, values map[string]any) []admissionregistrationv1.ValidatingWebhook {
	t.Helper()
	data, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rendered, stderr, err := helmTemplate(t, sandbox.Release, sandbox.KpoguardNamespace, "--set", "workers.guard.enabled=true", "--values", file)
	if err != nil {
		t.Fatalf("helm template: %v: %s", err, stderr)
	}
	var out []admissionregistrationv1.ValidatingWebhook
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if !strings.Contains(doc, "kind: ValidatingWebhookConfiguration") {
			continue
		}
		var v admissionregistrationv1.ValidatingWebhookConfiguration
		if err := yaml.UnmarshalStrict([]byte(doc), &v); err != nil {
			t.Fatal(err)
		}
		for _, w := range v.Webhooks {
			if strings.HasPrefix(w.Name, "guard-worker-") {
				out = append(out, w)
			}
		}
	}
	if len(out) != 2 {
		t.Fatalf("the chart renders %d worker guard webhooks, want 2 (exec, updates)", len(out))
	}
	return out
}

// The guard's objectSelector selects what workers.selector does, in every
// form a label selector takes, so the API server sends it the updates of
// exactly the pods kpoguard takes for workers.
func TestChartWorkerGuardSelectsWorkers(t *testing.T) {
	for _, sel := range []string{
		"component=worker",
		"component=worker,release=airflow",
		"component==worker, tier != web",
		"release in (airflow, airflow-2),!legacy",
		"component notin (scheduler,webserver),kubernetes_executor",
	} {
		want, err := labels.Parse(sel)
		if err != nil {
			t.Fatal(err)
		}
		var got labels.Selector = labels.Everything()
		for _, w := range guardWebhooks(t, map[string]any{"workers": map[string]any{"selector": sel}}) {
			if w.Name == "guard-worker-updates.kpoguard.io" {
				if got, err = metav1.LabelSelectorAsSelector(w.ObjectSelector); err != nil {
					t.Fatalf("%s: %v", sel, err)
				}
			}
		}
		if setBased(t, got) != setBased(t, want) {
			t.Errorf("workers.selector %q: objectSelector %q, want %q", sel, setBased(t, got), setBased(t, want))
		}
	}
}

// setBased writes a selector with = and != as the in and notin of one
// value they mean, so that equal selectors read alike.
func setBased(t *testing.T, s labels.Selector) string {
	t.Helper()
	reqs, _ := s.Requirements()
	out := labels.NewSelector()
	for _, r := range reqs {
		op := r.Operator()
		switch op {
		case selection.Equals, selection.DoubleEquals:
			op = selection.In
		case selection.NotEquals:
			op = selection.NotIn
		}
		req, err := labels.NewRequirement(r.Key(), op, r.Values().List())
		if err != nil {
			t.Fatal(err)
		}
		out = out.Add(*req)
	}
	return out.String()
}

// installWorkerGuard installs, for the test's lifetime, the worker guard's
// webhooks as the chart renders them with workers.guard.enabled (rules,
// selectors, matchConditions, failure policies), with only their
// clientConfig pointed at the sandbox's kpoguard.
func installWorkerGuard(t *testing.T) {
	t.Helper()
	guard := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "kpoguard-worker-guard"}}
	for _, w := range guardWebhooks(t, map[string]any{}) {
		url := cluster.Kpoguard.URL(*w.ClientConfig.Service.Path)
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: cluster.Env.WebhookInstallOptions.LocalServingCAData}
		guard.Webhooks = append(guard.Webhooks, w)
	}
	reg := cluster.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := reg.Create(t.Context(), guard, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Delete(context.Background(), guard.Name, metav1.DeleteOptions{}) })
}

// execIn makes the request kubectl exec starts with, as another user than
// kubectl's, without the stream upgrade: admission answers it before the
// API server would dial the pod's kubelet.
func execIn(t *testing.T, client kubernetes.Interface, pod string) error {
	t.Helper()
	return client.CoreV1().RESTClient().Post().Namespace(parentNamespace).Resource("pods").Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Command: []string{"sh"}, Stdin: true, Stdout: true, TTY: true}, scheme.ParameterCodec).Do(t.Context()).Error()
}

func guardDecisions(t *testing.T, decision string) float64 {
	t.Helper()
	return metric(t, `kpoguard_admission_requests_total{decision="`+decision+`",webhook="guard-workers"}`)
}

// The worker guard, through the real API server: exec, attach, image
// changes and kubectl debug on a worker are refused by kpoguard; the
// same on other pods, and everything by the exempt group, gets past
// admission; while kpoguard is down, exec passes and image changes fail.
func TestWorkerGuard(t *testing.T) {
	setUpWorkers(t)
	worker := startWorker(t, "guarded-worker-0", "default")
	pods := cluster.Client.CoreV1().Pods(parentNamespace)
	scheduler := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "airflow-scheduler-0", Labels: map[string]string{"component": "scheduler", "release": "airflow"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "scheduler", Image: "apache/airflow:3.1.0"}}},
	}
	// KPO execs into its task pods' xcom sidecar; a task pod is never a
	// worker, however it is labelled.
	task := sandbox.TaskPod("guarded-task")
	task.Labels["component"] = "worker"
	for _, p := range []*corev1.Pod{scheduler, task} {
		if _, err := pods.Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deletePod(t, parentNamespace, p.Name) })
	}
	installWorkerGuard(t)
	waitUntil(t, "the API server calls the worker guard", func() bool {
		return apierrors.IsForbidden(execIn(t, cluster.Client, worker.Name))
	})
	admin, err := kubernetes.NewForConfig(cluster.Env.Config) // system:masters, the chart's default exempt group
	if err != nil {
		t.Fatal(err)
	}
	setImage := func(client kubernetes.Interface, image string) error {
		_, err := client.CoreV1().Pods(parentNamespace).Patch(t.Context(), worker.Name, types.StrategicMergePatchType,
			[]byte(`{"spec":{"containers":[{"name":"worker","image":"`+image+`"}]}}`), metav1.PatchOptions{})
		return err
	}

	t.Run("exec and attach into a worker refused", func(t *testing.T) {
		for _, args := range [][]string{{"exec", worker.Name, "--", "sh"}, {"attach", worker.Name}} {
			r := kubectl(t, "", append([]string{"-n", parentNamespace}, args...)...)
			want := `error: unable to upgrade connection: admission webhook "guard-worker-exec.kpoguard.io" denied the request: kpoguard refuses pods/` + args[0] +
				` on pod "guarded-worker-0": it is an Airflow worker, an identity kpoguard trusts to place the task pods it launches`
			if r.code == 0 || !strings.Contains(r.stderr, want) {
				t.Errorf("kubectl %s: exit %d: %s\nwant %s", args[0], r.code, r.stderr, want)
			}
		}
	})

	t.Run("exec into other pods gets past admission", func(t *testing.T) {
		before := guardDecisions(t, "allowed")
		for _, pod := range []string{scheduler.Name, task.Name} {
			if r := kubectl(t, "", "-n", parentNamespace, "exec", pod, "--", "sh"); r.code == 0 || !pastAdmission(r.stderr) {
				t.Errorf("kubectl exec into %s: exit %d: %s\nwant the API server's error after admission", pod, r.code, r.stderr)
			}
		}
		// kubectl tries WebSockets, then SPDY: one call or two per exec.
		if got := guardDecisions(t, "allowed"); got < before+2 {
			t.Errorf("the guard allowed %v execs, want one at least into each pod", got-before)
		}
	})

	t.Run("a worker's image change refused, a label change allowed", func(t *testing.T) {
		r := kubectl(t, "", "-n", parentNamespace, "set", "image", "pod/"+worker.Name, "worker=apache/airflow:3.1.1")
		want := `admission webhook "guard-worker-updates.kpoguard.io" denied the request: kpoguard refuses changing what pod "guarded-worker-0" runs ` +
			`(container "worker" (spec.containers[0].image))`
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("kubectl set image: exit %d: %s\nwant %s", r.code, r.stderr, want)
		}
		if r := kubectl(t, "", "-n", parentNamespace, "label", "pod", worker.Name, "team=data"); r.code != 0 {
			t.Errorf("kubectl label: exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("kubectl debug on a worker refused", func(t *testing.T) {
		r := kubectl(t, "", "-n", parentNamespace, "debug", worker.Name, "--image=busybox:1.37", "--container=debugger")
		want := `admission webhook "guard-worker-updates.kpoguard.io" denied the request: kpoguard refuses changing what pod "guarded-worker-0" runs ` +
			`(container "debugger" (spec.ephemeralContainers[0].image))`
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("kubectl debug: exit %d: %s\nwant %s", r.code, r.stderr, want)
		}
	})

	t.Run("the exempt group passes: break glass", func(t *testing.T) {
		if err := execIn(t, admin, worker.Name); err == nil || !pastAdmission(err.Error()) {
			t.Errorf("exec into a worker as system:masters: %v, want the API server's error after admission", err)
		}
		if err := setImage(admin, "apache/airflow:3.1.1"); err != nil {
			t.Errorf("image change as system:masters: %v", err)
		}
	})

	t.Run("while kpoguard is down exec passes and image changes fail", func(t *testing.T) {
		cluster.Kpoguard.Stop()
		t.Cleanup(func() {
			if err := cluster.Kpoguard.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
		if err := execIn(t, cluster.Client, worker.Name); err == nil || !pastAdmission(err.Error()) {
			t.Errorf("exec into a worker: %v, want the API server's error after admission (failurePolicy Ignore)", err)
		}
		if err := setImage(cluster.Client, "apache/airflow:3.1.2"); err == nil || !strings.Contains(err.Error(), `failed calling webhook "guard-worker-updates.kpoguard.io"`) {
			t.Errorf("image change: %v, want the guard's failure (failurePolicy Fail)", err)
		}
		if err := setImage(admin, "apache/airflow:3.1.2"); err != nil {
			t.Errorf("image change as system:masters: %v", err)
		}
	})
}
