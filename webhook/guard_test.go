package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// connect is a CONNECT request on a pod's subresource, as the API server
// sends it for kubectl exec or attach: the object is the options, not the
// pod.
func connect(t *testing.T, subresource, pod string) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:         "test-uid",
		Kind:        metav1.GroupVersionKind{Version: "v1", Kind: "PodExecOptions"},
		Resource:    metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		SubResource: subresource,
		Namespace:   testNamespace,
		Name:        pod,
		Operation:   admissionv1.Connect,
		Object:      runtime.RawExtension{Raw: []byte(mustJSON(t, corev1.PodExecOptions{Command: []string{"sh"}, Stdin: true, TTY: true}))},
	}}
}

// update is an UPDATE of a pod, through a subresource or not.
func update(t *testing.T, subresource string, old, pod *corev1.Pod) admission.Request {
	req := newPodRequest(admissionv1.Update, []byte(mustJSON(t, pod)))
	req.Name, req.SubResource = pod.Name, subresource
	req.OldObject = runtime.RawExtension{Raw: []byte(mustJSON(t, old))}
	return req
}

func changed(p *corev1.Pod, change func(*corev1.Pod)) *corev1.Pod {
	p = p.DeepCopy()
	change(p)
	return p
}

func TestGuardWorkers(t *testing.T) {
	worker := workerPod("worker-0", "big", func(p *corev1.Pod) {
		p.Spec.Containers = []corev1.Container{{Name: "worker", Image: "apache/airflow:3.1.0"}}
		p.Spec.InitContainers = []corev1.Container{{Name: "wait-for-migrations", Image: "apache/airflow:3.1.0"}}
	})
	// KPO execs into its task pods' xcom sidecar; a task pod is never a
	// worker, however it is labelled.
	task := changed(worker, func(p *corev1.Pod) { p.Name, p.Labels["kubernetes_pod_operator"] = "task", "True" })
	other := changed(worker, func(p *corev1.Pod) { p.Name, p.Labels["component"] = "scheduler-0", "scheduler" })
	newImage := func(p *corev1.Pod) { p.Spec.Containers[0].Image = "evil:1" }

	const identity = `it is an Airflow worker, an identity kpoguard trusts to place the task pods it launches, and whoever runs a command or an image of their own in it can act as it with its service-account token`
	for _, c := range []struct {
		name string
		req  admission.Request
		// apiDown makes every read from the API server fail.
		apiDown bool
		allowed bool
		code    int32
		message string
	}{
		{name: "exec into a worker", req: connect(t, "exec", "worker-0"), code: 403,
			message: `kpoguard refuses pods/exec on pod "worker-0": ` + identity + `; exec into a task pod instead, or ask a platform engineer`},
		{name: "attach to a worker", req: connect(t, "attach", "worker-0"), code: 403, message: `kpoguard refuses pods/attach on pod "worker-0": `},
		{name: "exec into a task pod labelled like a worker", req: connect(t, "exec", "task"), allowed: true},
		{name: "exec into another pod", req: connect(t, "exec", "scheduler-0"), allowed: true},
		{name: "exec into a pod that does not exist", req: connect(t, "exec", "gone"), allowed: true},
		{name: "worker lookup failing", req: connect(t, "exec", "scheduler-0"), apiDown: true, code: 503,
			message: `kpoguard could not tell whether pod "scheduler-0" is an Airflow worker, on which pods/exec is refused: API down; try again`},
		{name: "a worker's image changed", req: update(t, "", worker, changed(worker, newImage)), code: 403,
			message: `kpoguard refuses changing what pod "worker-0" runs (container "worker" (spec.containers[0].image)): ` + identity +
				`; change the image where the workers are deployed (their Deployment or StatefulSet), or ask a platform engineer`},
		{name: "a worker's init container image changed", req: update(t, "", worker, changed(worker, func(p *corev1.Pod) { p.Spec.InitContainers[0].Image = "evil:1" })),
			code: 403, message: `(container "wait-for-migrations" (spec.initContainers[0].image))`},
		{name: "kubectl debug on a worker", req: update(t, "ephemeralcontainers", worker, changed(worker, func(p *corev1.Pod) {
			// The worker's own image: still a new container with its token.
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger-x7k", Image: "apache/airflow:3.1.0"}}}
		})), code: 403, message: `(container "debugger-x7k" (spec.ephemeralContainers[0].image))`},
		{name: "a worker relabelled", req: update(t, "", worker, changed(worker, func(p *corev1.Pod) { p.Labels["team"] = "data" })), allowed: true},
		{name: "a pod made a worker as its image changes", req: update(t, "", other, changed(other, func(p *corev1.Pod) { p.Labels["component"] = "worker"; newImage(p) })),
			code: 403, message: `kpoguard refuses changing what pod "scheduler-0" runs`},
		{name: "a worker made another pod as its image changes", req: update(t, "", worker, changed(worker, func(p *corev1.Pod) { p.Labels["component"] = "scheduler"; newImage(p) })),
			code: 403, message: `kpoguard refuses changing what pod "worker-0" runs`},
		{name: "another pod's image changed", req: update(t, "", other, changed(other, newImage)), allowed: true},
		{name: "a task pod's image changed", req: update(t, "", task, changed(task, newImage)), allowed: true},
		{name: "a malformed pod", req: func() admission.Request {
			r := update(t, "", worker, worker)
			r.Object.Raw = []byte(`{"spec":`)
			return r
		}(), code: 400, message: "decoding the pod"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDeps(t, basePolicy)
			client := fake.NewClientset(worker, task, other)
			if c.apiDown {
				client.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, errors.New("API down")
				})
			}
			cache, err := NewWorkerCache(t.Context(), client, labels.SelectorFromSet(labels.Set{"component": "worker"}), time.Second, 10, d.Metrics)
			if err != nil {
				t.Fatal(err)
			}
			d.WorkerPods = cache
			resp := d.GuardWorkers().Handle(t.Context(), c.req)
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, c.allowed, resp.Result)
			}
			if c.allowed {
				return
			}
			if resp.Result.Code != c.code || !strings.Contains(resp.Result.Message, c.message) {
				t.Errorf("refused with %d %q\nwant %d with %q", resp.Result.Code, resp.Result.Message, c.code, c.message)
			}
		})
	}
}

// Without worker lookups the guard cannot tell workers from other pods,
// and says so; each decision is counted under the guard's own webhook.
func TestGuardWorkersWithoutLookups(t *testing.T) {
	d := newDeps(t, basePolicy)
	resp := d.GuardWorkers().Handle(t.Context(), connect(t, "exec", "worker-0"))
	if resp.Allowed || resp.Result.Code != 500 || !strings.Contains(resp.Result.Message, "without worker lookups") {
		t.Errorf("response %+v, want a 500 naming the missing worker lookups", resp.Result)
	}
	if n := testutil.ToFloat64(d.Metrics.admissions.WithLabelValues(hookGuardWorkers, "error")); n != 1 {
		t.Errorf("guard-workers errors counted: %v, want 1", n)
	}
}

// IsWorker reads the pod an exec names: a worker by the selector, not a
// task pod, not one that is gone; the API server's failure is an error.
func TestWorkerCacheIsWorker(t *testing.T) {
	worker := workerPod("worker-0", "big")
	other := workerPod("scheduler-0", "big", func(p *corev1.Pod) { p.Labels["component"] = "scheduler" })
	task := workerPod("task-0", "big", func(p *corev1.Pod) { p.Labels[policy.TaskPodLabel] = "True" })
	client := fake.NewClientset(worker, other, task)
	c, err := NewWorkerCache(t.Context(), client, labels.SelectorFromSet(labels.Set{"component": "worker"}), time.Second, 10, NewMetrics())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"worker-0": true, "scheduler-0": false, "task-0": false, "gone": false} {
		if ok, err := c.IsWorker(t.Context(), testNamespace, name); ok != want || err != nil {
			t.Errorf("%s: %v, %v; want %v", name, ok, err, want)
		}
	}
	client.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("API down")
	})
	if _, err := c.IsWorker(t.Context(), testNamespace, "worker-0"); err == nil {
		t.Error("the API server down: no error")
	}
}
