package policy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestMaxResources(t *testing.T) {
	const containerMax = "maxResources:\n  container: {cpu: 2, memory: 4Gi}\n"
	const podMax = "maxResources:\n  pod: {cpu: 3}\n"
	const podMaxMem = "maxResources:\n  pod: {cpu: 3, memory: 6Gi}\n"

	fix := func(name, max string) string {
		return "set container_resources to at most " + name + ": " + max + ", or ask your platform team for a larger maximum"
	}
	over := func(subject, path, kind, name, value, max, per string) Violation {
		return Violation{Rule: MaxResources, Mode: Enforce, Subject: subject, Path: path,
			Message: name + " " + kind + " " + value + " exceeds the maximum " + max + " " + per, Fix: fix(name, max)}
	}
	noLimit := func(subject, path, name, max, per string) Violation {
		return Violation{Rule: MaxResources, Mode: Enforce, Subject: subject, Path: path,
			Message: "no " + name + " limit is set, so it could use more than the maximum " + max + " " + per,
			Fix:     "set a " + name + " limit of at most " + max + " in container_resources"}
	}
	const perC, perPod, perAll = "per container", "per pod", "per pod (all containers together)"
	const allLimits, allRequests = "spec.containers[*].resources.limits", "spec.containers[*].resources.requests"

	withInit := func(p *corev1.Pod, init ...corev1.Container) *corev1.Pod {
		p.Spec.InitContainers = init
		return p
	}
	// podLevel gives the pod pod-level requests and limits (spec.resources).
	podLevel := func(p *corev1.Pod, requests, limits string) *corev1.Pod {
		res := rr(requests, limits)
		p.Spec.Resources = &res
		return p
	}
	boundedBy := func(subject, path, name, podLimit, max string) Violation {
		return Violation{Rule: MaxResources, Mode: Enforce, Subject: subject, Path: path,
			Message: "no " + name + " limit is set, so it could use all of the pod-level limit " + podLimit + ", more than the maximum " + max + " " + perC,
			Fix:     "set a " + name + " limit of at most " + max + " in container_resources, or lower the pod-level limit"}
	}

	tests := []struct {
		name  string
		rules string
		pod   *corev1.Pod
		want  []Violation
	}{
		{
			name:  "within the container maximum",
			rules: containerMax,
			pod:   taskPod(ctr("base", rr("cpu=2,memory=4Gi", "cpu=2,memory=4Gi"))),
		},
		{
			name:  "a limit above the container maximum; its request is not reported twice",
			rules: containerMax,
			pod:   taskPod(ctr("base", rr("cpu=3,memory=1Gi", "cpu=3,memory=4097Mi"))),
			want: []Violation{
				over(`container "base"`, "spec.containers[0].resources.limits[cpu]", "limit", "cpu", "3", "2", perC),
				over(`container "base"`, "spec.containers[0].resources.limits[memory]", "limit", "memory", "4097Mi", "4Gi", perC),
			},
		},
		{
			name:  "a missing limit with a maximum is refused",
			rules: containerMax,
			pod:   taskPod(ctr("base", rr("cpu=1,memory=1Gi", "memory=1Gi"))),
			want: []Violation{
				noLimit(`container "base"`, "spec.containers[0].resources.limits[cpu]", "cpu", "2", perC),
			},
		},
		{
			name:  "a missing limit and a request above the maximum are both reported",
			rules: containerMax,
			pod:   taskPod(ctr("base", rr("cpu=5", "memory=1Gi"))),
			want: []Violation{
				noLimit(`container "base"`, "spec.containers[0].resources.limits[cpu]", "cpu", "2", perC),
				over(`container "base"`, "spec.containers[0].resources.requests[cpu]", "request", "cpu", "5", "2", perC),
			},
		},
		{
			name:  "a request above the maximum under an allowed limit",
			rules: containerMax,
			pod:   taskPod(ctr("base", rr("cpu=2500m", "cpu=2,memory=1Gi"))),
			want: []Violation{
				over(`container "base"`, "spec.containers[0].resources.requests[cpu]", "request", "cpu", "2500m", "2", perC),
			},
		},
		{
			name:  "every container is checked, init containers after app containers",
			rules: containerMax,
			pod: withInit(taskPod(
				ctr("base", rr("", "cpu=1,memory=1Gi")),
				ctr(XComSidecar, rr("", "cpu=50m,memory=8Gi"))),
				ctr("init", rr("", "cpu=4,memory=1Gi")),
				sidecarInit("proxy", rr("", "memory=1Gi"))),
			want: []Violation{
				over(`container "airflow-xcom-sidecar"`, "spec.containers[1].resources.limits[memory]", "limit", "memory", "8Gi", "4Gi", perC),
				over(`container "init"`, "spec.initContainers[0].resources.limits[cpu]", "limit", "cpu", "4", "2", perC),
				noLimit(`container "proxy"`, "spec.initContainers[1].resources.limits[cpu]", "cpu", "2", perC),
			},
		},
		{
			name:  "resources without a maximum are not checked",
			rules: "maxResources:\n  container: {memory: 4Gi}\n",
			pod:   taskPod(ctr("base", rr("cpu=64", "memory=1Gi"))),
		},
		{
			name:  "no maximum configured",
			rules: "maxResources: {}\n",
			pod:   taskPod(ctr("base", rr("cpu=64", ""))),
		},
		{
			name:  "pod total of app containers within the maximum",
			rules: podMax,
			pod:   taskPod(ctr("a", rr("cpu=1", "cpu=1500m")), ctr("b", rr("cpu=1", "cpu=1500m"))),
		},
		{
			name:  "pod total of app containers above the maximum",
			rules: podMax,
			pod:   taskPod(ctr("a", rr("cpu=1", "cpu=2")), ctr("b", rr("cpu=1", "cpu=2"))),
			want: []Violation{
				over("pod", allLimits+"[cpu]", "limit", "cpu", "4", "3", perAll),
			},
		},
		{
			name:  "pod total requests above the maximum when the limits are not",
			rules: podMax,
			pod:   taskPod(ctr("a", rr("cpu=2", "cpu=1")), ctr("b", rr("cpu=2", "cpu=1"))),
			want: []Violation{
				over("pod", allRequests+"[cpu]", "request", "cpu", "4", "3", perAll),
			},
		},
		{
			name:  "the pod has no limit when one container has none",
			rules: podMax,
			pod:   taskPod(ctr("a", rr("cpu=1", "cpu=1")), ctr("b", rr("cpu=1", ""))),
			want: []Violation{
				noLimit("pod", allLimits+"[cpu]", "cpu", "3", perAll),
			},
		},
		{
			name:  "the pod has no limit when an init container has none",
			rules: podMax,
			pod:   withInit(taskPod(ctr("a", rr("cpu=1", "cpu=1"))), ctr("init", rr("cpu=100m", ""))),
			want: []Violation{
				noLimit("pod", allLimits+"[cpu]", "cpu", "3", perAll),
			},
		},
		{
			name:  "an init container runs alone: the largest one counts, not the sum",
			rules: podMax,
			pod: withInit(taskPod(ctr("a", rr("cpu=1", "cpu=1"))),
				ctr("init-1", rr("cpu=3", "cpu=3")), ctr("init-2", rr("cpu=3", "cpu=3"))),
		},
		{
			name:  "an init container larger than the maximum",
			rules: podMax,
			pod: withInit(taskPod(ctr("a", rr("cpu=1", "cpu=1"))),
				ctr("init", rr("cpu=3500m", "cpu=3500m"))),
			want: []Violation{
				over("pod", allLimits+"[cpu]", "limit", "cpu", "3500m", "3", perAll),
			},
		},
		{
			name:  "sidecar init containers are summed with the app containers",
			rules: podMax,
			pod: withInit(taskPod(ctr("a", rr("cpu=2", "cpu=2"))),
				sidecarInit("proxy", rr("cpu=1500m", "cpu=1500m"))),
			want: []Violation{
				over("pod", allLimits+"[cpu]", "limit", "cpu", "3500m", "3", perAll),
			},
		},
		{
			name:  "an init container after a sidecar runs beside it",
			rules: podMax,
			pod: withInit(taskPod(ctr("a", rr("cpu=500m", "cpu=500m"))),
				sidecarInit("proxy", rr("cpu=1", "cpu=1")),
				ctr("init", rr("cpu=2500m", "cpu=2500m"))),
			want: []Violation{
				over("pod", allLimits+"[cpu]", "limit", "cpu", "3500m", "3", perAll),
			},
		},
		{
			name:  "an init container before a sidecar runs alone",
			rules: podMax,
			pod: withInit(taskPod(ctr("a", rr("cpu=500m", "cpu=500m"))),
				ctr("init", rr("cpu=2500m", "cpu=2500m")),
				sidecarInit("proxy", rr("cpu=1", "cpu=1"))),
		},
		{
			name:  "several resources are reported in name order",
			rules: podMaxMem,
			pod:   taskPod(ctr("a", rr("cpu=2,memory=4Gi", "cpu=2,memory=4Gi")), ctr("b", rr("cpu=2,memory=4Gi", "cpu=2,memory=4Gi"))),
			want: []Violation{
				over("pod", allLimits+"[cpu]", "limit", "cpu", "4", "3", perAll),
				over("pod", allLimits+"[memory]", "limit", "memory", "8Gi", "6Gi", perAll),
			},
		},
		{
			name:  "pod-level resources are checked instead of the containers' total",
			rules: podMax,
			pod: func() *corev1.Pod {
				p := taskPod(ctr("a", rr("cpu=2", "cpu=2")), ctr("b", rr("cpu=2", "cpu=2")))
				p.Spec.Resources = &corev1.ResourceRequirements{Requests: list("cpu=2"), Limits: list("cpu=3")}
				return p
			}(),
		},
		{
			name:  "pod-level limit above the maximum",
			rules: podMax,
			pod: func() *corev1.Pod {
				p := taskPod(ctr("a", rr("", "")))
				p.Spec.Resources = &corev1.ResourceRequirements{Requests: list("cpu=2"), Limits: list("cpu=4")}
				return p
			}(),
			want: []Violation{
				over("pod", "spec.resources.limits[cpu]", "limit", "cpu", "4", "3", perPod),
			},
		},
		{
			name:  "pod-level resources without a limit",
			rules: podMax,
			pod: func() *corev1.Pod {
				p := taskPod(ctr("a", rr("", "")))
				p.Spec.Resources = &corev1.ResourceRequirements{Requests: list("cpu=4")}
				return p
			}(),
			want: []Violation{
				noLimit("pod", "spec.resources.limits[cpu]", "cpu", "3", perPod),
				over("pod", "spec.resources.requests[cpu]", "request", "cpu", "4", "3", perPod),
			},
		},
		{
			name:  "a pod-level limit within the container maximum bounds containers without limits",
			rules: containerMax,
			pod:   podLevel(taskPod(ctr("base", rr("", "")), ctr(XComSidecar, rr("", ""))), "", "cpu=2,memory=4Gi"),
		},
		{
			name:  "init containers and sidecars are bounded by the pod-level limit too",
			rules: containerMax,
			pod: podLevel(withInit(taskPod(ctr("base", rr("cpu=1", ""))),
				ctr("init", rr("", "")), sidecarInit("proxy", rr("", ""))), "", "cpu=1500m,memory=1Gi"),
		},
		{
			name:  "a pod-level limit above the container maximum: containers without their own limit are refused",
			rules: containerMax,
			pod:   podLevel(taskPod(ctr("base", rr("", "")), ctr("helper", rr("", "cpu=1"))), "", "cpu=3,memory=4Gi"),
			want: []Violation{
				boundedBy(`container "base"`, "spec.containers[0].resources.limits[cpu]", "cpu", "3", "2"),
			},
		},
		{
			name:  "a pod-level limit above the container maximum is fine when every container has its own limit within it",
			rules: containerMax,
			pod:   podLevel(taskPod(ctr("a", rr("", "cpu=2")), ctr("b", rr("", "cpu=1"))), "", "cpu=3,memory=4Gi"),
		},
		{
			name:  "a pod-level request bounds no container",
			rules: containerMax,
			pod:   podLevel(taskPod(ctr("base", rr("", "memory=1Gi"))), "cpu=1", ""),
			want: []Violation{
				noLimit(`container "base"`, "spec.containers[0].resources.limits[cpu]", "cpu", "2", perC),
			},
		},
		{
			name:  "with a pod-level request alone, the containers' limits bound the pod",
			rules: podMax,
			pod:   podLevel(taskPod(ctr("a", rr("", "cpu=1")), ctr("b", rr("", "cpu=2"))), "cpu=2", ""),
		},
		{
			name:  "with a pod-level request alone, the containers' limits above the pod maximum",
			rules: podMax,
			pod:   podLevel(taskPod(ctr("a", rr("", "cpu=2")), ctr("b", rr("", "cpu=2"))), "cpu=2", ""),
			want: []Violation{
				over("pod", "spec.resources.limits[cpu]", "limit", "cpu", "4", "3", perPod),
			},
		},
		{
			name:  "a pod-level limit above both maxima, with containers without limits",
			rules: "maxResources:\n  container: {cpu: 4, memory: 8Gi}\n  pod: {cpu: 4, memory: 8Gi}\n",
			pod:   podLevel(taskPod(ctr("base", rr("", ""))), "", "cpu=8,memory=8Gi"),
			want: []Violation{
				boundedBy(`container "base"`, "spec.containers[0].resources.limits[cpu]", "cpu", "8", "4"),
				over("pod", "spec.resources.limits[cpu]", "limit", "cpu", "8", "4", perPod),
			},
		},
		{
			name:  "container and pod maxima together: containers first",
			rules: "maxResources:\n  container: {cpu: 2}\n  pod: {cpu: 3}\n",
			pod:   taskPod(ctr("a", rr("cpu=2500m", "cpu=2500m")), ctr("b", rr("cpu=1", "cpu=1"))),
			want: []Violation{
				over(`container "a"`, "spec.containers[0].resources.limits[cpu]", "limit", "cpu", "2500m", "2", perC),
				over("pod", allLimits+"[cpu]", "limit", "cpu", "3500m", "3", perAll),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, MaxResources, tt.rules)
			pod := tt.pod.DeepCopy()
			assertViolations(t, rs.Validate(pod, Facts{}), tt.want)
			assertSemantic(t, "pod after Validate", pod, tt.pod)
		})
	}
}

func TestPodTotal(t *testing.T) {
	tests := []struct {
		name string
		app  []corev1.Container
		init []corev1.Container
		want string
	}{
		{"app containers are summed", []corev1.Container{ctr("a", rr("cpu=1,memory=1Gi", "")), ctr("b", rr("cpu=500m", ""))}, nil, "cpu=1500m,memory=1Gi"},
		{"largest init container wins over a smaller app total",
			[]corev1.Container{ctr("a", rr("cpu=1", ""))},
			[]corev1.Container{ctr("i1", rr("cpu=2,memory=1Gi", "")), ctr("i2", rr("cpu=500m,memory=3Gi", ""))},
			"cpu=2,memory=3Gi"},
		{"sidecars add to the app total and to later init containers",
			[]corev1.Container{ctr("a", rr("cpu=1", ""))},
			[]corev1.Container{ctr("early", rr("cpu=1500m", "")), sidecarInit("s", rr("cpu=500m", "")), ctr("late", rr("cpu=1500m", ""))},
			"cpu=2"},
		{"no containers", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := taskPod(tt.app...)
			pod.Spec.InitContainers = tt.init
			if got := fmtList(podTotal(pod, requestsOf)); got != tt.want {
				t.Errorf("podTotal = %s, want %s", got, tt.want)
			}
		})
	}
}

// Pod-level resources bound the pod for the resources they name; the
// others are still counted over the containers.
func TestMaxResourcesPartialPodLevelResources(t *testing.T) {
	rs := rulesFor(t, "maxResources: {pod: {cpu: \"2\", memory: 4Gi}}\n")
	pod := taskPod(ctr("base", corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("3Gi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("3Gi")},
	}))
	pod.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}
	if got := only(rs, MaxResources).Validate(pod, Facts{}); len(got) != 0 {
		t.Errorf("violations %v, want none: pod-level cpu 2 bounds the pod, container memory 3Gi is under 4Gi", got)
	}
	pod.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("5Gi")
	got := only(rs, MaxResources).Validate(pod, Facts{})
	if len(got) != 1 || got[0].Path != "spec.containers[*].resources.limits[memory]" {
		t.Errorf("violations %v, want the containers' memory total", got)
	}
}

func TestServiceAccountEmptyAllowedListRefused(t *testing.T) {
	_, err := Load([]byte(doc("serviceAccount: {allowed: []}\n")))
	if err == nil || !strings.Contains(err.Error(), "spec.rules.serviceAccount.allowed: Required value") {
		t.Errorf("err = %v, want allowed required", err)
	}
}
