package policy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestRequestsEqualLimits(t *testing.T) {
	const enforce = "requestsEqualLimits: {mode: enforce}\n"
	ch := func(path, value string) Change {
		return Change{Rule: RequestsEqualLimits, Mode: Enforce, Path: path, Value: value}
	}

	// podLevel gives the pod pod-level requests and limits (spec.resources).
	podLevel := func(p *corev1.Pod, requests, limits string) *corev1.Pod {
		res := rr(requests, limits)
		p.Spec.Resources = &res
		return p
	}

	tests := []struct {
		name    string
		rules   string
		pod     *corev1.Pod
		want    []Change
		wantRes []corev1.ResourceRequirements
		// wantPodRes is spec.resources after the rule, for pods that set it.
		wantPodRes corev1.ResourceRequirements
	}{
		{
			name:  "requests below limits are raised to the limits",
			rules: enforce,
			pod:   taskPod(ctr("base", rr("cpu=500m,memory=1Gi", "cpu=1,memory=2Gi"))),
			want: []Change{
				ch("spec.containers[0].resources.requests[cpu]", "1"),
				ch("spec.containers[0].resources.requests[memory]", "2Gi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi")},
		},
		{
			name:    "a container with only limits gets requests",
			rules:   enforce,
			pod:     taskPod(ctr("base", rr("", "cpu=2"))),
			want:    []Change{ch("spec.containers[0].resources.requests[cpu]", "2")},
			wantRes: []corev1.ResourceRequirements{rr("cpu=2", "cpu=2")},
		},
		{
			name:    "a container without limits keeps its requests",
			rules:   enforce,
			pod:     taskPod(ctr("base", rr("cpu=500m,memory=1Gi", ""))),
			want:    nil,
			wantRes: []corev1.ResourceRequirements{rr("cpu=500m,memory=1Gi", "")},
		},
		{
			name:    "equal requests and limits change nothing",
			rules:   enforce,
			pod:     taskPod(ctr("base", rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi"))),
			want:    nil,
			wantRes: []corev1.ResourceRequirements{rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi")},
		},
		{
			name:    "equal values written differently change nothing",
			rules:   enforce,
			pod:     taskPod(ctr("base", rr("cpu=1000m,memory=2048Mi", "cpu=1,memory=2Gi"))),
			want:    nil,
			wantRes: []corev1.ResourceRequirements{rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi")},
		},
		{
			name:    "a request above its limit is never lowered",
			rules:   enforce,
			pod:     taskPod(ctr("base", rr("cpu=3", "cpu=2"))),
			want:    nil,
			wantRes: []corev1.ResourceRequirements{rr("cpu=3", "cpu=2")},
		},
		{
			name:    "only the configured resources are raised",
			rules:   "requestsEqualLimits: {mode: enforce, resources: [memory]}\n",
			pod:     taskPod(ctr("base", rr("cpu=500m,memory=1Gi", "cpu=1,memory=2Gi"))),
			want:    []Change{ch("spec.containers[0].resources.requests[memory]", "2Gi")},
			wantRes: []corev1.ResourceRequirements{rr("cpu=500m,memory=2Gi", "cpu=1,memory=2Gi")},
		},
		{
			name:  "resources are handled in configured order",
			rules: "requestsEqualLimits: {mode: enforce, resources: [memory, ephemeral-storage, cpu]}\n",
			pod:   taskPod(ctr("base", rr("cpu=500m", "cpu=1,memory=2Gi,ephemeral-storage=1Gi"))),
			want: []Change{
				ch("spec.containers[0].resources.requests[memory]", "2Gi"),
				ch("spec.containers[0].resources.requests[ephemeral-storage]", "1Gi"),
				ch("spec.containers[0].resources.requests[cpu]", "1"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=1,ephemeral-storage=1Gi,memory=2Gi", "cpu=1,ephemeral-storage=1Gi,memory=2Gi")},
		},
		{
			name:  "init containers and sidecars are covered, after app containers",
			rules: enforce,
			pod: func() *corev1.Pod {
				p := taskPod(ctr("base", rr("cpu=1", "cpu=1")), ctr(XComSidecar, rr("cpu=1m,memory=10Mi", "cpu=50m,memory=32Mi")))
				p.Spec.InitContainers = []corev1.Container{
					ctr("init", rr("", "memory=64Mi")),
					sidecarInit("proxy", rr("cpu=10m", "cpu=100m")),
				}
				return p
			}(),
			want: []Change{
				ch("spec.containers[1].resources.requests[cpu]", "50m"),
				ch("spec.containers[1].resources.requests[memory]", "32Mi"),
				ch("spec.initContainers[0].resources.requests[memory]", "64Mi"),
				ch("spec.initContainers[1].resources.requests[cpu]", "100m"),
			},
			wantRes: []corev1.ResourceRequirements{
				rr("cpu=1", "cpu=1"),
				rr("cpu=50m,memory=32Mi", "cpu=50m,memory=32Mi"),
				rr("memory=64Mi", "memory=64Mi"),
				rr("cpu=100m", "cpu=100m"),
			},
		},
		{
			name:  "a resource sized at pod level is raised there, not in the containers",
			rules: enforce,
			pod:   podLevel(taskPod(ctr("base", rr("cpu=1,memory=1Gi", "cpu=3,memory=2Gi"))), "cpu=1", "cpu=4"),
			want: []Change{
				ch("spec.containers[0].resources.requests[memory]", "2Gi"),
				ch("spec.resources.requests[cpu]", "4"),
			},
			wantRes:    []corev1.ResourceRequirements{rr("cpu=1,memory=2Gi", "cpu=3,memory=2Gi")},
			wantPodRes: rr("cpu=4", "cpu=4"),
		},
		{
			name:       "a pod-level limit without a request gets one",
			rules:      enforce,
			pod:        podLevel(taskPod(ctr("base", rr("cpu=500m", ""))), "", "cpu=2,memory=4Gi"),
			want:       []Change{ch("spec.resources.requests[cpu]", "2"), ch("spec.resources.requests[memory]", "4Gi")},
			wantRes:    []corev1.ResourceRequirements{rr("cpu=500m", "")},
			wantPodRes: rr("cpu=2,memory=4Gi", "cpu=2,memory=4Gi"),
		},
		{
			// Raising both containers to their limits would ask for 4 CPUs
			// in a pod that requests 2, which the API server refuses.
			name:       "a pod-level request without a limit leaves the resource alone",
			rules:      enforce,
			pod:        podLevel(taskPod(ctr("a", rr("cpu=1", "cpu=2")), ctr("b", rr("cpu=1", "cpu=2"))), "cpu=2", ""),
			want:       nil,
			wantRes:    []corev1.ResourceRequirements{rr("cpu=1", "cpu=2"), rr("cpu=1", "cpu=2")},
			wantPodRes: rr("cpu=2", ""),
		},
		{
			name:    "off by default",
			rules:   "requestsEqualLimits: {}\n",
			pod:     taskPod(ctr("base", rr("cpu=500m", "cpu=1"))),
			want:    nil,
			wantRes: []corev1.ResourceRequirements{rr("cpu=500m", "cpu=1")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, RequestsEqualLimits, tt.rules)
			pod := tt.pod.DeepCopy()
			assertChanges(t, rs.Mutate(pod, Facts{}), tt.want)
			refs := containers(pod)
			if len(refs) != len(tt.wantRes) {
				t.Fatalf("got %d containers, want %d", len(refs), len(tt.wantRes))
			}
			for i, ref := range refs {
				assertResources(t, ref.path.String(), ref.c.Resources, tt.wantRes[i])
			}
			if pod.Spec.Resources != nil {
				assertResources(t, "spec.resources", *pod.Spec.Resources, tt.wantPodRes)
			}
			assertChanges(t, rs.Mutate(pod, Facts{}), nil)
		})
	}
}

// requests-equal-limits runs after default-resources, so it sees the
// limits the defaults filled in (here: the xcom sidecar's built-in ones).
func TestRequestsEqualLimitsAfterDefaults(t *testing.T) {
	rs := rulesFor(t, "defaultResources:\n  requests: {cpu: 500m, memory: 1Gi}\n  limits: {cpu: 1, memory: 2Gi}\nrequestsEqualLimits: {mode: enforce}\n")
	rs = only(rs, DefaultResources)
	rs.RequestsEqualLimits.Mode = Enforce
	pod := taskPod(ctr("base", rr("", "")), ctr(XComSidecar, rr("cpu=1m,memory=10Mi", "")))
	d := func(path, value string) Change {
		return Change{Rule: DefaultResources, Mode: Enforce, Path: path, Value: value}
	}
	r := func(path, value string) Change {
		return Change{Rule: RequestsEqualLimits, Mode: Enforce, Path: path, Value: value}
	}
	assertChanges(t, rs.Mutate(pod, Facts{}), []Change{
		d("spec.containers[0].resources.limits[cpu]", "1"),
		d("spec.containers[0].resources.requests[cpu]", "500m"),
		d("spec.containers[0].resources.limits[memory]", "2Gi"),
		d("spec.containers[0].resources.requests[memory]", "1Gi"),
		d("spec.containers[1].resources.limits[cpu]", "50m"),
		d("spec.containers[1].resources.limits[memory]", "32Mi"),
		r("spec.containers[0].resources.requests[cpu]", "1"),
		r("spec.containers[0].resources.requests[memory]", "2Gi"),
		r("spec.containers[1].resources.requests[cpu]", "50m"),
		r("spec.containers[1].resources.requests[memory]", "32Mi"),
	})
	assertResources(t, "base", pod.Spec.Containers[0].Resources, rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi"))
	assertResources(t, "sidecar", pod.Spec.Containers[1].Resources, rr("cpu=50m,memory=32Mi", "cpu=50m,memory=32Mi"))
	assertChanges(t, rs.Mutate(pod, Facts{}), nil)
}
