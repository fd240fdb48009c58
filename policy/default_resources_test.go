package policy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestDefaultResources(t *testing.T) {
	const builtIn = "defaultResources: {}\n" // 1 CPU / 2Gi, requests = limits

	ch := func(path, value string) Change {
		return Change{Rule: DefaultResources, Mode: Enforce, Path: path, Value: value}
	}
	c0 := "spec.containers[0].resources."

	tests := []struct {
		name  string
		rules string
		pod   *corev1.Pod
		want  []Change
		// wantRes lists every container's resulting resources, app
		// containers then init containers.
		wantRes []corev1.ResourceRequirements
	}{
		{
			name:  "no resources gets the default pod size",
			rules: builtIn,
			pod:   basePod(),
			want: []Change{
				ch(c0+"limits[cpu]", "1"), ch(c0+"requests[cpu]", "1"),
				ch(c0+"limits[memory]", "2Gi"), ch(c0+"requests[memory]", "2Gi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi")},
		},
		{
			name:    "requests below the default limit keep their value and get the default limit",
			rules:   builtIn,
			pod:     taskPod(ctr("base", rr("cpu=500m,memory=1Gi", ""))),
			want:    []Change{ch(c0+"limits[cpu]", "1"), ch(c0+"limits[memory]", "2Gi")},
			wantRes: []corev1.ResourceRequirements{rr("cpu=500m,memory=1Gi", "cpu=1,memory=2Gi")},
		},
		{
			name:  "a request above the default limit raises the limit to the request",
			rules: builtIn,
			pod:   taskPod(ctr("base", rr("cpu=3", ""))),
			want: []Change{
				ch(c0+"limits[cpu]", "3"),
				ch(c0+"limits[memory]", "2Gi"), ch(c0+"requests[memory]", "2Gi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=3,memory=2Gi", "cpu=3,memory=2Gi")},
		},
		{
			name:  "a request equal to the default limit keeps the default limit",
			rules: builtIn,
			pod:   taskPod(ctr("base", rr("memory=2Gi", ""))),
			want: []Change{
				ch(c0+"limits[cpu]", "1"), ch(c0+"requests[cpu]", "1"),
				ch(c0+"limits[memory]", "2Gi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi")},
		},
		{
			name:  "a container with only a limit gets request = limit, even below the default request",
			rules: "defaultResources:\n  requests: {cpu: 1, memory: 2Gi}\n  limits: {cpu: 2, memory: 4Gi}\n",
			pod:   taskPod(ctr("base", rr("", "cpu=500m"))),
			want: []Change{
				ch(c0+"requests[cpu]", "500m"),
				ch(c0+"limits[memory]", "4Gi"), ch(c0+"requests[memory]", "2Gi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=500m,memory=2Gi", "cpu=500m,memory=4Gi")},
		},
		{
			name:  "a container with only a limit above the default request gets request = its limit",
			rules: "defaultResources:\n  requests: {cpu: 1, memory: 2Gi}\n  limits: {cpu: 2, memory: 4Gi}\n",
			pod:   taskPod(ctr("base", rr("", "cpu=4,memory=8Gi"))),
			want: []Change{
				ch(c0+"requests[cpu]", "4"), ch(c0+"requests[memory]", "8Gi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=4,memory=8Gi", "cpu=4,memory=8Gi")},
		},
		{
			name:    "fully specified resources are left alone",
			rules:   builtIn,
			pod:     taskPod(ctr("base", rr("cpu=250m,memory=256Mi", "cpu=500m,memory=512Mi"))),
			want:    nil,
			wantRes: []corev1.ResourceRequirements{rr("cpu=250m,memory=256Mi", "cpu=500m,memory=512Mi")},
		},
		{
			name:  "defaults with requests below limits (burstable)",
			rules: "defaultResources:\n  requests: {cpu: 250m, memory: 512Mi}\n  limits: {cpu: 1, memory: 1Gi}\n",
			pod:   basePod(),
			want: []Change{
				ch(c0+"limits[cpu]", "1"), ch(c0+"requests[cpu]", "250m"),
				ch(c0+"limits[memory]", "1Gi"), ch(c0+"requests[memory]", "512Mi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=250m,memory=512Mi", "cpu=1,memory=1Gi")},
		},
		{
			name:    "defaults with only requests set no limit",
			rules:   "defaultResources:\n  requests: {cpu: 500m, memory: 1Gi}\n",
			pod:     basePod(),
			want:    []Change{ch(c0+"requests[cpu]", "500m"), ch(c0+"requests[memory]", "1Gi")},
			wantRes: []corev1.ResourceRequirements{rr("cpu=500m,memory=1Gi", "")},
		},
		{
			name:    "defaults with only requests: an own limit below the default request becomes the request",
			rules:   "defaultResources:\n  requests: {cpu: 500m}\n",
			pod:     taskPod(ctr("base", rr("", "cpu=200m"))),
			want:    []Change{ch(c0+"requests[cpu]", "200m")},
			wantRes: []corev1.ResourceRequirements{rr("cpu=200m", "cpu=200m")},
		},
		{
			name:  "defaults with only limits give request = limit",
			rules: "defaultResources:\n  limits: {cpu: 2, memory: 3Gi}\n",
			pod:   basePod(),
			want: []Change{
				ch(c0+"limits[cpu]", "2"), ch(c0+"requests[cpu]", "2"),
				ch(c0+"limits[memory]", "3Gi"), ch(c0+"requests[memory]", "3Gi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=2,memory=3Gi", "cpu=2,memory=3Gi")},
		},
		{
			name:  "a resource in the default limits but not its requests gets request = limit",
			rules: "defaultResources:\n  requests: {cpu: 1, memory: 2Gi}\n  limits: {cpu: 1, memory: 2Gi, ephemeral-storage: 4Gi}\n",
			pod:   basePod(),
			want: []Change{
				ch(c0+"limits[cpu]", "1"), ch(c0+"requests[cpu]", "1"),
				ch(c0+"limits[ephemeral-storage]", "4Gi"), ch(c0+"requests[ephemeral-storage]", "4Gi"),
				ch(c0+"limits[memory]", "2Gi"), ch(c0+"requests[memory]", "2Gi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=1,ephemeral-storage=4Gi,memory=2Gi", "cpu=1,ephemeral-storage=4Gi,memory=2Gi")},
		},
		{
			name:  "resources the default does not name are left alone",
			rules: builtIn,
			pod:   taskPod(ctr("base", rr("nvidia.com/gpu=1", "nvidia.com/gpu=1"))),
			want: []Change{
				ch(c0+"limits[cpu]", "1"), ch(c0+"requests[cpu]", "1"),
				ch(c0+"limits[memory]", "2Gi"), ch(c0+"requests[memory]", "2Gi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=1,memory=2Gi,nvidia.com/gpu=1", "cpu=1,memory=2Gi,nvidia.com/gpu=1")},
		},
		{
			name:  "quantities written as YAML numbers are canonicalised in changes",
			rules: "defaultResources:\n  requests: {cpu: 0.5, memory: 1073741824}\n  limits: {cpu: 1.5, memory: 2147483648}\n",
			pod:   basePod(),
			want: []Change{
				ch(c0+"limits[cpu]", "1500m"), ch(c0+"requests[cpu]", "500m"),
				ch(c0+"limits[memory]", "2147483648"), ch(c0+"requests[memory]", "1073741824"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=500m,memory=1073741824", "cpu=1500m,memory=2147483648")},
		},
		{
			name:  "KPO's xcom sidecar gets its small built-in default, not the task's size",
			rules: builtIn,
			pod:   taskPod(ctr("base", rr("", "")), ctr(XComSidecar, rr("cpu=1m,memory=10Mi", ""))),
			want: []Change{
				ch(c0+"limits[cpu]", "1"), ch(c0+"requests[cpu]", "1"),
				ch(c0+"limits[memory]", "2Gi"), ch(c0+"requests[memory]", "2Gi"),
				ch("spec.containers[1].resources.limits[cpu]", "50m"),
				ch("spec.containers[1].resources.limits[memory]", "32Mi"),
			},
			wantRes: []corev1.ResourceRequirements{
				rr("cpu=1,memory=2Gi", "cpu=1,memory=2Gi"),
				rr("cpu=1m,memory=10Mi", "cpu=50m,memory=32Mi"),
			},
		},
		{
			name:  "xcom sidecar without resources gets the whole built-in default",
			rules: builtIn,
			pod:   taskPod(ctr(XComSidecar, rr("", ""))),
			want: []Change{
				ch(c0+"limits[cpu]", "50m"), ch(c0+"requests[cpu]", "1m"),
				ch(c0+"limits[memory]", "32Mi"), ch(c0+"requests[memory]", "10Mi"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=1m,memory=10Mi", "cpu=50m,memory=32Mi")},
		},
		{
			name:  "the xcom sidecar keeps its built-in default when other containers are configured",
			rules: "defaultResources:\n  containers:\n    helper: {requests: {cpu: 100m}, limits: {cpu: 200m}}\n",
			pod:   taskPod(ctr("helper", rr("", "")), ctr(XComSidecar, rr("", ""))),
			want: []Change{
				ch(c0+"limits[cpu]", "200m"), ch(c0+"requests[cpu]", "100m"),
				ch("spec.containers[1].resources.limits[cpu]", "50m"),
				ch("spec.containers[1].resources.requests[cpu]", "1m"),
				ch("spec.containers[1].resources.limits[memory]", "32Mi"),
				ch("spec.containers[1].resources.requests[memory]", "10Mi"),
			},
			wantRes: []corev1.ResourceRequirements{
				rr("cpu=100m", "cpu=200m"),
				rr("cpu=1m,memory=10Mi", "cpu=50m,memory=32Mi"),
			},
		},
		{
			name:  "the policy can replace the xcom sidecar's default",
			rules: "defaultResources:\n  containers:\n    airflow-xcom-sidecar: {requests: {cpu: 5m}, limits: {cpu: 5m}}\n",
			pod:   taskPod(ctr(XComSidecar, rr("", ""))),
			want: []Change{
				ch(c0+"limits[cpu]", "5m"), ch(c0+"requests[cpu]", "5m"),
			},
			wantRes: []corev1.ResourceRequirements{rr("cpu=5m", "cpu=5m")},
		},
		{
			name:  "init containers and sidecar init containers get defaults too, after app containers",
			rules: "defaultResources:\n  requests: {cpu: 500m}\n  limits: {cpu: 1}\n",
			pod: func() *corev1.Pod {
				p := taskPod(ctr("base", rr("", "")))
				p.Spec.InitContainers = []corev1.Container{
					ctr("init", rr("", "")),
					sidecarInit("proxy", rr("cpu=2", "")),
				}
				return p
			}(),
			want: []Change{
				ch(c0+"limits[cpu]", "1"), ch(c0+"requests[cpu]", "500m"),
				ch("spec.initContainers[0].resources.limits[cpu]", "1"),
				ch("spec.initContainers[0].resources.requests[cpu]", "500m"),
				ch("spec.initContainers[1].resources.limits[cpu]", "2"),
			},
			wantRes: []corev1.ResourceRequirements{
				rr("cpu=500m", "cpu=1"),
				rr("cpu=500m", "cpu=1"),
				rr("cpu=2", "cpu=2"),
			},
		},
		{
			name:  "ephemeral containers are not touched",
			rules: builtIn,
			pod: func() *corev1.Pod {
				p := taskPod()
				p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{}}
				return p
			}(),
			want:    nil,
			wantRes: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, DefaultResources, tt.rules)
			pod := tt.pod.DeepCopy()
			assertChanges(t, rs.Mutate(pod, Facts{}), tt.want)
			refs := containers(pod)
			if len(refs) != len(tt.wantRes) {
				t.Fatalf("got %d containers, want %d", len(refs), len(tt.wantRes))
			}
			for i, ref := range refs {
				assertResources(t, ref.path.String(), ref.c.Resources, tt.wantRes[i])
			}
			// Idempotent: a second run changes nothing.
			again := pod.DeepCopy()
			assertChanges(t, rs.Mutate(again, Facts{}), nil)
			assertSemantic(t, "pod after second run", again, pod)
		})
	}
}

// The same request must never end above its limit, whatever the defaults.
func TestDefaultResourcesNeverLeaveRequestAboveLimit(t *testing.T) {
	rs := ruleOnly(t, DefaultResources, "defaultResources:\n  requests: {cpu: 1, memory: 1Gi}\n  limits: {cpu: 2, memory: 2Gi}\n")
	for _, res := range []corev1.ResourceRequirements{
		rr("", ""), rr("cpu=3", ""), rr("", "cpu=500m"), rr("cpu=100m", ""), rr("memory=3Gi", "cpu=100m"),
		rr("cpu=2", ""), rr("", "memory=512Mi"), rr("cpu=1500m,memory=4Gi", ""),
	} {
		pod := taskPod(ctr("base", res))
		rs.Mutate(pod, Facts{})
		got := pod.Spec.Containers[0].Resources
		for name, req := range got.Requests {
			if lim, ok := got.Limits[name]; ok && req.Cmp(lim) > 0 {
				t.Errorf("from %s/%s: %s request %s above limit %s", fmtList(res.Requests), fmtList(res.Limits), name, req.String(), lim.String())
			}
		}
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := got.Requests[name]; !ok {
				t.Errorf("from %s/%s: no %s request", fmtList(res.Requests), fmtList(res.Limits), name)
			}
			if _, ok := got.Limits[name]; !ok {
				t.Errorf("from %s/%s: no %s limit", fmtList(res.Requests), fmtList(res.Limits), name)
			}
		}
	}
}

// An extended resource requested without a limit gets the equal limit the
// API server requires; a null request from the Python client decodes to 0.
func TestDefaultResourcesExtendedResourceLimit(t *testing.T) {
	rs := rulesFor(t, "defaultResources: {requests: {cpu: 100m}, limits: {cpu: 200m}}\n")
	tests := []struct {
		name string
		res  corev1.ResourceRequirements
		want []string
	}{
		{"null gpu request", corev1.ResourceRequirements{Requests: corev1.ResourceList{"nvidia.com/gpu": resource.Quantity{}, corev1.ResourceCPU: resource.MustParse("100m")}},
			[]string{"spec.containers[0].resources.limits[nvidia.com/gpu]=0", "spec.containers[0].resources.limits[cpu]=200m"}},
		{"gpu request", corev1.ResourceRequirements{Requests: corev1.ResourceList{"example.com/fpga": resource.MustParse("2")}, Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}},
			[]string{"spec.containers[0].resources.limits[example.com/fpga]=2", "spec.containers[0].resources.requests[cpu]=1"}},
		{"gpu limit already set", corev1.ResourceRequirements{Requests: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}, Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1"), corev1.ResourceCPU: resource.MustParse("1")}},
			[]string{"spec.containers[0].resources.requests[cpu]=1"}},
		{"hugepages are not extended", corev1.ResourceRequirements{Requests: corev1.ResourceList{"hugepages-2Mi": resource.MustParse("2Mi")}, Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}},
			[]string{"spec.containers[0].resources.requests[cpu]=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := taskPod(ctr("base", tt.res))
			var got []string
			for _, c := range only(rs, DefaultResources).Mutate(pod, Facts{}) {
				got = append(got, c.Path+"="+c.Value)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// Resources the pod sizes at pod level get no container defaults: a
// container without a limit is bounded by the pod-level limit, and default
// requests could add up to more than the pod-level request, which the API
// server refuses.
func TestDefaultResourcesLeavesPodLevelResources(t *testing.T) {
	rs := rulesFor(t, "defaultResources: {requests: {cpu: \"1\", memory: 1Gi}, limits: {cpu: \"1\", memory: 1Gi, ephemeral-storage: 2Gi}}\n")
	tests := []struct {
		name     string
		podLevel corev1.ResourceRequirements
		want     []string
	}{
		{"a pod-level limit", rr("", "cpu=500m"), []string{
			"spec.containers[0].resources.limits[ephemeral-storage]=2Gi",
			"spec.containers[0].resources.requests[ephemeral-storage]=2Gi",
			"spec.containers[0].resources.limits[memory]=1Gi",
			"spec.containers[0].resources.requests[memory]=1Gi",
			"spec.containers[1].resources.limits[memory]=32Mi",
			"spec.containers[1].resources.requests[memory]=10Mi",
		}},
		{"a pod-level request", rr("memory=4Gi", ""), []string{
			"spec.containers[0].resources.limits[cpu]=1",
			"spec.containers[0].resources.requests[cpu]=1",
			"spec.containers[0].resources.limits[ephemeral-storage]=2Gi",
			"spec.containers[0].resources.requests[ephemeral-storage]=2Gi",
			"spec.containers[1].resources.limits[cpu]=50m",
			"spec.containers[1].resources.requests[cpu]=1m",
		}},
		// Pod-level resources cannot name ephemeral-storage; the xcom
		// sidecar's built-in entry has cpu and memory only.
		{"cpu and memory at pod level", rr("cpu=1,memory=2Gi", "cpu=2,memory=4Gi"), []string{
			"spec.containers[0].resources.limits[ephemeral-storage]=2Gi",
			"spec.containers[0].resources.requests[ephemeral-storage]=2Gi",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := taskPod(ctr("base", corev1.ResourceRequirements{}), ctr(XComSidecar, corev1.ResourceRequirements{}))
			pod.Spec.Resources = &tt.podLevel
			var got []string
			for _, c := range only(rs, DefaultResources).Mutate(pod, Facts{}) {
				got = append(got, c.Path+"="+c.Value)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
