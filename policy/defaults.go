package policy

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TaskPodLabel is the label KPO puts on every pod it creates.
const TaskPodLabel = "kubernetes_pod_operator"

// XComSidecar is the container KPO appends when do_xcom_push=True.
const XComSidecar = "airflow-xcom-sidecar"

// XComVolume is the emptyDir volume KPO adds for the sidecar.
const XComVolume = "xcom"

// Every default of the policy document is set here and nowhere else.

func setScopeDefaults(s *ScopeSpec) {
	if s.TaskPodSelector == nil {
		s.TaskPodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{TaskPodLabel: "True"}}
	}
	if s.ExemptNamespaces == nil {
		s.ExemptNamespaces = []string{"kube-system"}
	}
}

func setRuleDefaults(r *RulesSpec) {
	dr := &r.DefaultResources
	defaultMode(&dr.Mode, Enforce)
	if dr.Requests == nil && dr.Limits == nil {
		// One CPU and 2Gi, requests equal to limits: a Guaranteed pod.
		size := ResourceAmounts{corev1.ResourceCPU: "1", corev1.ResourceMemory: "2Gi"}
		dr.Requests, dr.Limits = size, size
	}
	if _, ok := dr.Containers[XComSidecar]; !ok {
		if dr.Containers == nil {
			dr.Containers = map[string]ResourcesSpec{}
		}
		// The sidecar only sleeps until KPO reads the XCom file; it must
		// never get the task's size.
		dr.Containers[XComSidecar] = ResourcesSpec{
			Requests: ResourceAmounts{corev1.ResourceCPU: "1m", corev1.ResourceMemory: "10Mi"},
			Limits:   ResourceAmounts{corev1.ResourceCPU: "50m", corev1.ResourceMemory: "32Mi"},
		}
	}

	// Guaranteed QoS costs capacity, so the platform opts in.
	defaultMode(&r.RequestsEqualLimits.Mode, Off)
	if r.RequestsEqualLimits.Resources == nil {
		r.RequestsEqualLimits.Resources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}
	}

	defaultMode(&r.MaxResources.Mode, Enforce)

	defaultMode(&r.NoPersistentVolumes.Mode, Enforce)
	defaultBool(&r.NoPersistentVolumes.AllowHostPath, false)

	es := &r.EphemeralStorage
	defaultMode(&es.Mode, Enforce)
	defaultBool(&es.AllowEmptyDir, false)
	if es.DefaultSizeLimit == "" {
		es.DefaultSizeLimit = "1Gi"
	}

	defaultMode(&r.EnvSecrets.Mode, Enforce)
	if r.EnvSecrets.SecretName == "" {
		r.EnvSecrets.SecretName = "env-secrets"
	}
	if r.EnvSecrets.Containers == nil {
		r.EnvSecrets.Containers = []string{"base"}
	}

	defaultMode(&r.ServiceAccount.Mode, Enforce)
	if r.ServiceAccount.Allowed == nil {
		r.ServiceAccount.Allowed = []string{"default"}
	}

	defaultMode(&r.ImagePullSecrets.Mode, Enforce)

	defaultMode(&r.NodePool.Mode, Enforce)
	defaultBool(&r.NodePool.AllowNodeName, false)
	pp := &r.NodePool.Parent
	if pp.Source == "" {
		pp.Source = ParentOff
	}
	if pp.OnConflict == "" {
		pp.OnConflict = ConflictDeny
	}
	if pp.Fallbacks == nil {
		// Refusing is the only choice that lets no pod pick its own pool.
		pp.Fallbacks = []Fallback{FallbackDeny}
	}
	// OutOfClusterFallbacks stays nil when not written: Fallbacks apply.

	ia := &r.ImageArchitecture
	defaultMode(&ia.Mode, Enforce)
	if ia.Architectures == nil {
		ia.Architectures = []string{"amd64"}
	}
	if ia.OS == "" {
		ia.OS = "linux"
	}
	if ia.OnLookupFailure == "" {
		ia.OnLookupFailure = string(AllowOnLookupFailure)
	}
	if ia.LookupTimeout == "" {
		ia.LookupTimeout = "2s"
	}
	defaultBool(&ia.UsePullSecrets, false)
	defaultBool(&ia.OnlyListedRegistries, false)
}

func defaultMode(m *Mode, def Mode) {
	if *m == "" {
		*m = def
	}
}

func defaultBool(b **bool, def bool) {
	if *b == nil {
		*b = &def
	}
}
