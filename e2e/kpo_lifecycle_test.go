package e2e

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/review"
)

// The namespace of an Airflow deployment whose worker runs
// KubernetesPodOperator tasks, and the worker's service account.
const (
	kpoNamespace     = "airflow-kpo"
	kpoWorkerAccount = "airflow-worker"
)

// setUpKPOWorker creates the namespace, the worker's service account with
// the pod-launcher Role the official Airflow chart gives it, and a worker
// pod, and returns a client acting as that worker does in-cluster: with a
// token bound to its pod.
func setUpKPOWorker(t *testing.T) kubernetes.Interface {
	t.Helper()
	ctx, c := t.Context(), cluster.Client
	createPodLauncher(t, kpoNamespace, kpoWorkerAccount)
	worker, err := c.CoreV1().Pods(kpoNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "airflow-worker-0", Labels: map[string]string{"component": "worker", "release": "airflow"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: kpoWorkerAccount,
			Containers:         []corev1.Container{{Name: "worker", Image: "apache/airflow:3.1.0", Command: []string{"airflow", "celery", "worker"}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deletePod(t, kpoNamespace, worker.Name) })
	tr, err := c.CoreV1().ServiceAccounts(kpoNamespace).CreateToken(ctx, kpoWorkerAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: new(int64(600)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: worker.Name, UID: worker.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(&rest.Config{
		Host:            cluster.Env.Config.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: cluster.Env.Config.CAData},
		BearerToken:     tr.Status.Token,
	})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// kpoTry is the pod KPO's build_pod_request_obj() posts for one try of
// the task of testdata/kpo/01-kpo-basic-no-resources.yaml.
func kpoTry(t *testing.T, try string) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(kpoFixture("01-kpo-basic-no-resources.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.Unmarshal(data, &pod); err != nil {
		t.Fatal(err)
	}
	pod.Namespace = kpoNamespace
	pod.Name = "extract-orders-try" + try // add_unique_suffix() differs per try
	pod.Labels["try_number"] = try
	return &pod
}

// findPodSelector is what KPO's find_pod() lists with to reattach to a
// try's pod: the operator's labels and the task instance's (without
// try_number), sorted, then already_checked!=True and !airflow-worker
// (_build_find_pod_label_selector).
const findPodSelector = "dag_id=etl_orders_daily,kubernetes_pod_operator=True," +
	"run_id=scheduled__2025-06-01T0000000000-62a051894,task_id=extract_orders,team=data-eng," +
	"already_checked!=True,!airflow-worker"

// KubernetesPodOperator's own calls on its pods, replayed as the provider
// makes them from the worker's identity and through the chart's webhooks:
// each try's pod created, read and watched; a failed try marked
// already_checked by patch_already_checked (a label-only strategic merge
// patch in current providers, the whole serialized pod in older ones and
// the Spark and Ray operators), so that the next try's find_pod() does not
// reattach to it; the pods deleted with a grace period (on_kill, cleanup).
func TestKubernetesPodOperatorLifecycle(t *testing.T) {
	worker := setUpKPOWorker(t)
	pods := worker.CoreV1().Pods(kpoNamespace)
	kubelet := cluster.Client.CoreV1().Pods(kpoNamespace)
	ctx := t.Context()

	reattach := func(want ...string) {
		t.Helper()
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: findPodSelector})
		if err != nil {
			t.Fatalf("find_pod: %v", err)
		}
		var got []string
		for _, p := range list.Items {
			got = append(got, p.Name)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("find_pod found %q, want %q", got, want)
		}
	}
	// fail runs a try's pod to failure, as a watching worker sees it.
	fail := func(name string) *corev1.Pod {
		t.Helper()
		w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		defer w.Stop()
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("read_namespaced_pod: %v", err)
		}
		pod.Status.Phase = corev1.PodFailed
		if _, err := kubelet.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev := <-w.ResultChan():
				if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Modified && p.Status.Phase == corev1.PodFailed {
					return p
				}
			case <-timeout:
				t.Fatalf("the worker's watch did not see %s fail", name)
			}
		}
	}
	create := func(try string) *corev1.Pod {
		t.Helper()
		created, err := pods.Create(ctx, kpoTry(t, try), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating try %s: %v", try, err)
		}
		t.Cleanup(func() { deletePod(t, kpoNamespace, created.Name) })
		if created.Annotations[review.AnnotationPolicy] == "" {
			t.Fatalf("try %s was not reviewed by kpoguard: %v", try, created.Annotations)
		}
		return created
	}
	checked := func(name string) {
		t.Helper()
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Labels["already_checked"] != "True" {
			t.Fatalf("%s labels %v, want already_checked=True", name, pod.Labels)
		}
	}

	reattach()
	first := create("1")
	reattach(first.Name)
	failed := fail(first.Name)
	if _, err := pods.Patch(ctx, failed.Name, types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"already_checked":"True"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch_already_checked (label only) refused: %v", err)
	}
	checked(first.Name)
	reattach()

	second := create("2")
	reattach(second.Name)
	failed = fail(second.Name)
	if err := patchAlreadyCheckedWhole(t, pods, failed); err != nil {
		t.Fatalf("patch_already_checked (the whole pod) refused: %v", err)
	}
	checked(second.Name)
	reattach()

	for _, name := range []string{first.Name, second.Name} {
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(30))}); err != nil {
			t.Fatalf("delete_namespaced_pod %s: %v", name, err)
		}
		// Never scheduled, the pod goes at once whatever its grace period.
		if _, err := pods.Get(context.Background(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s still there after its deletion: %v", name, err)
		}
	}
}
