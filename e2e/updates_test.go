package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/internal/registrytest"
	"github.com/kpoguard/kpoguard/internal/sandbox"
)

// callRecorder notes, by pod name, the admission requests the API server
// sends a webhook, as "<webhook> <operation>[ <subresource>]".
type callRecorder struct {
	mu    sync.Mutex
	calls map[string][]string
}

func (r *callRecorder) handler(hook string) admission.Handler {
	return admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		call := hook + " " + string(req.Operation)
		if req.SubResource != "" {
			call += " " + req.SubResource
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.calls[req.Name] = append(r.calls[req.Name], call)
		return admission.Allowed("")
	})
}

// take returns and forgets the calls made for a pod.
func (r *callRecorder) take(pod string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls := r.calls[pod]
	delete(r.calls, pod)
	return calls
}

// recordChartWebhooks installs, for one namespace, copies of the chart's
// pod webhooks (rules, selectors, matchConditions and failure policies as
// rendered) that only record what the API server sends them.
func recordChartWebhooks(t *testing.T, namespace string) *callRecorder {
	t.Helper()
	rec := &callRecorder{calls: map[string][]string{}}
	url := serveTestWebhooks(t, map[string]admission.Handler{
		"/mutate-pods":   rec.handler("mutate-pods"),
		"/validate-pods": rec.handler("validate-pods"),
	})
	ca := cluster.Env.WebhookInstallOptions.LocalServingCAData
	only := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": namespace}}
	m := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "zz-record-" + namespace}}
	for _, w := range cluster.Webhooks.Mutating.Webhooks {
		if w.Name == "mutate-pods.kpoguard.io" {
			path := url + "/mutate-pods"
			w.Name, w.ClientConfig, w.NamespaceSelector = "record-mutate-pods.kpoguard.test", admissionregistrationv1.WebhookClientConfig{URL: &path, CABundle: ca}, only
			m.Webhooks = append(m.Webhooks, w)
		}
	}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "zz-record-" + namespace}}
	for _, w := range cluster.Webhooks.Validating.Webhooks {
		if w.Name == "validate-pods.kpoguard.io" {
			path := url + "/validate-pods"
			w.Name, w.ClientConfig, w.NamespaceSelector = "record-validate-pods.kpoguard.test", admissionregistrationv1.WebhookClientConfig{URL: &path, CABundle: ca}, only
			v.Webhooks = append(v.Webhooks, w)
		}
	}
	if len(m.Webhooks) != 1 || len(v.Webhooks) != 1 {
		t.Fatalf("the chart renders %d mutate-pods and %d validate-pods webhooks, want one of each", len(m.Webhooks), len(v.Webhooks))
	}
	installWebhookConfigurations(t, m, v)
	waitUntil(t, "the recording webhooks are called", func() bool {
		_, err := cluster.Client.CoreV1().Pods(namespace).Create(t.Context(), sandbox.TaskPod("record-probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && len(rec.take("record-probe")) == 2
	})
	return rec
}

// podChange is a request a client makes on a task pod after creating it.
type podChange struct {
	name string
	// pod changes the task pod before it is created.
	pod func(*corev1.Pod)
	// do makes the request; nil means the create itself is the request.
	do func(t *testing.T, pod *corev1.Pod) error
	// calls the request must make, in order; none means not sent.
	calls []string
	// refused is what kpoguard's refusal says, where it refuses.
	refused string
}

// Every request a client makes on a task pod passes the chart's
// matchConditions without an evaluation error (which the API server
// turns into a refusal under failurePolicy Fail), and reaches kpoguard
// exactly when it has something to check: creates, resizes, ephemeral
// containers, and updates of images or tolerations. Label, annotation
// and finalizer updates, server-side applies that change nothing, the
// kubelet's status and the scheduler's binding never reach it.
func TestChartMatchConditionsForEveryRequestShape(t *testing.T) {
	const ns = "kpo-updates"
	if err := cluster.CreateNamespace(t.Context(), ns, nil); err != nil {
		t.Fatal(err)
	}
	rec := recordChartWebhooks(t, ns)
	pods := cluster.Client.CoreV1().Pods(ns)
	patch := func(pt types.PatchType, body string, subresources ...string) func(*testing.T, *corev1.Pod) error {
		return func(t *testing.T, pod *corev1.Pod) error {
			_, err := pods.Patch(t.Context(), pod.Name, pt, []byte(body), metav1.PatchOptions{}, subresources...)
			return err
		}
	}
	run := func(verb string, args ...string) func(*testing.T, *corev1.Pod) error {
		return func(t *testing.T, pod *corev1.Pod) error {
			if r := kubectl(t, "", append([]string{"-n", ns, verb, "pod", pod.Name}, args...)...); r.code != 0 {
				return &kubectlError{r}
			}
			return nil
		}
	}
	withFinalizer := func(p *corev1.Pod) { p.Finalizers = []string{"example.com/log-archiver"} }
	validated := []string{"validate-pods UPDATE"}
	for i, c := range []podChange{
		{name: "create", calls: []string{"mutate-pods CREATE", "validate-pods CREATE"}},
		{name: "kubectl label", do: run("label", "already_checked=True", "--overwrite")},
		{name: "kubectl annotate", do: run("annotate", "incident=INC-1234", "--overwrite")},
		{name: "KPO patch_already_checked: label-only strategic merge patch",
			do: patch(types.StrategicMergePatchType, `{"metadata":{"labels":{"already_checked":"True"}}}`)},
		{name: "older KPO, Spark and Ray: the whole serialized pod as a strategic merge patch",
			do: func(t *testing.T, pod *corev1.Pod) error { return patchAlreadyCheckedWhole(t, pods, pod) }},
		{name: "finalizer added by a controller (JSON patch)",
			do: func(t *testing.T, pod *corev1.Pod) error {
				t.Cleanup(func() { _ = patch(types.MergePatchType, `{"metadata":{"finalizers":null}}`)(t, pod) })
				return patch(types.JSONPatchType, `[{"op":"add","path":"/metadata/finalizers","value":["example.com/log-archiver"]}]`)(t, pod)
			}},
		{name: "finalizer removed by its controller (update)", pod: withFinalizer,
			do: func(t *testing.T, pod *corev1.Pod) error {
				pod.Finalizers = nil
				_, err := pods.Update(t.Context(), pod, metav1.UpdateOptions{})
				return err
			}},
		{name: "server-side apply that changes nothing", do: func(t *testing.T, pod *corev1.Pod) error {
			body := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + pod.Name + `","labels":{"kubernetes_pod_operator":"True"}}}`
			_, err := pods.Patch(t.Context(), pod.Name, types.ApplyPatchType, []byte(body), metav1.PatchOptions{FieldManager: "airflow"})
			return err
		}},
		{name: "status written by the kubelet", do: func(t *testing.T, pod *corev1.Pod) error {
			pod.Status.Phase = corev1.PodFailed
			_, err := pods.UpdateStatus(t.Context(), pod, metav1.UpdateOptions{})
			return err
		}},
		{name: "bound by the scheduler", do: func(t *testing.T, pod *corev1.Pod) error {
			return pods.Bind(t.Context(), &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name}, Target: corev1.ObjectReference{Kind: "Node", Name: "node-a"}}, metav1.CreateOptions{})
		}},
		{name: "deleted with a grace period", do: func(t *testing.T, pod *corev1.Pod) error {
			return pods.Delete(t.Context(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(30))})
		}},
		{name: "container image changed", calls: validated,
			do: patch(types.StrategicMergePatchType, `{"spec":{"containers":[{"name":"base","image":"`+cluster.Registry.Ref(registrytest.MultiArch)+`"}]}}`)},
		{name: "init container image changed", calls: validated,
			pod: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "fetch", Image: "ubuntu:22.04", Command: []string{"true"}}}
			},
			do: patch(types.StrategicMergePatchType, `{"spec":{"initContainers":[{"name":"fetch","image":"`+cluster.Registry.Ref(registrytest.MultiArch)+`"}]}}`)},
		{name: "toleration added", calls: validated, refused: "was added to a running task pod",
			do: func(t *testing.T, pod *corev1.Pod) error {
				pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists})
				_, err := pods.Update(t.Context(), pod, metav1.UpdateOptions{})
				return err
			}},
		{name: "task label removed", calls: validated, refused: "[task-scope] label kubernetes_pod_operator",
			do: patch(types.MergePatchType, `{"metadata":{"labels":{"kubernetes_pod_operator":null}}}`)},
		{name: "scheduling gate lifted", calls: validated,
			pod: func(p *corev1.Pod) { p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/hold"}} },
			do:  patch(types.JSONPatchType, `[{"op":"remove","path":"/spec/schedulingGates"}]`)},
		{name: "nodeSelector added while gated", calls: validated, refused: "[node-pool] nodeSelector (spec.nodeSelector): was changed in a running task pod",
			pod: func(p *corev1.Pod) { p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/hold"}} },
			do:  patch(types.StrategicMergePatchType, `{"spec":{"nodeSelector":{"disk":"ssd"}}}`)},
		{name: "resized (pods/resize)", calls: []string{"validate-pods UPDATE resize"}, do: func(t *testing.T, pod *corev1.Pod) error {
			cpu := resource.MustParse("2")
			pod.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU] = cpu
			pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = cpu
			_, err := pods.UpdateResize(t.Context(), pod.Name, pod, metav1.UpdateOptions{})
			return err
		}},
		{name: "ephemeral container (kubectl debug)", calls: []string{"validate-pods UPDATE ephemeralcontainers"},
			do: func(t *testing.T, pod *corev1.Pod) error {
				pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
					Name: "debugger", Image: cluster.Registry.Ref(registrytest.MultiArch), TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent,
				}}}
				_, err := pods.UpdateEphemeralContainers(t.Context(), pod.Name, pod, metav1.UpdateOptions{})
				return err
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := fmt.Sprintf("shape-%02d", i)
			pod := sandbox.TaskPod(name)
			if c.pod != nil {
				c.pod(pod)
			}
			created, err := pods.Create(t.Context(), pod, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("creating the task pod: %v", err)
			}
			t.Cleanup(func() { deletePod(t, ns, name) })
			if c.do != nil {
				rec.take(name)
				err = c.do(t, created)
			}
			switch {
			case c.refused == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
				t.Errorf("error = %v, want kpoguard's refusal %q", err, c.refused)
			}
			if got := rec.take(name); !slices.Equal(got, c.calls) {
				t.Errorf("webhook calls %q, want %q", got, c.calls)
			}
		})
	}
}

// patchAlreadyCheckedWhole is patch_already_checked of older KPO
// providers and of the Spark and Ray operators: the pod as last read, with
// the label set, serialized whole (metadata, spec and status) as the body
// of a strategic merge patch, the type the Python client sends a dict as.
func patchAlreadyCheckedWhole(t *testing.T, pods podPatcher, pod *corev1.Pod) error {
	t.Helper()
	pod = pod.DeepCopy()
	pod.Labels["already_checked"] = "True"
	body, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pods.Patch(t.Context(), pod.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{})
	return err
}

// podPatcher is the part of a pod client that patches.
type podPatcher interface {
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Pod, error)
}

type kubectlError struct{ r kubectlResult }

func (e *kubectlError) Error() string {
	return fmt.Sprintf("kubectl: exit %d: %s", e.r.code, e.r.stderr)
}
