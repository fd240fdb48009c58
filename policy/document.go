package policy

import (
	"bytes"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIVersion and Kind identify a policy document.
const (
	APIVersion = "kpoguard.io/v1alpha1"
	Kind       = "PodPolicy"
)

// Document is the policy as platform engineers write it. Quantities stay
// text here so that a bad one is reported with its field path; Load turns a
// Document into a typed, validated Policy.
type Document struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata,omitempty"`
	Spec       Spec     `json:"spec"`
}

// Metadata names the policy in logs and messages.
type Metadata struct {
	Name string `json:"name,omitempty"`
}

// Spec holds the scope, the cluster-wide rules and the namespace overrides.
type Spec struct {
	Scope     ScopeSpec      `json:"scope,omitempty"`
	Rules     RulesSpec      `json:"rules,omitempty"`
	Overrides []OverrideSpec `json:"overrides,omitempty"`
}

// ScopeSpec says which pods are task pods and who may bypass the policy.
type ScopeSpec struct {
	// TaskPodSelector selects task pods by label. Default: the label KPO
	// puts on every pod it creates. An empty selector ({}) selects every pod.
	TaskPodSelector *metav1.LabelSelector `json:"taskPodSelector,omitempty"`
	// ExemptNamespaces are never checked. Default: kube-system.
	ExemptNamespaces []string `json:"exemptNamespaces,omitempty"`
	// ExemptUsers and ExemptGroups are break-glass identities: their
	// requests pass unchanged.
	ExemptUsers  []string `json:"exemptUsers,omitempty"`
	ExemptGroups []string `json:"exemptGroups,omitempty"`
}

// OverrideSpec changes rules for the namespaces it matches. Its rules are a
// JSON merge patch (RFC 7386) over the cluster-wide rules.
type OverrideSpec struct {
	Name              string                `json:"name,omitempty"`
	Namespaces        []string              `json:"namespaces,omitempty"`
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	Rules             RulesSpec             `json:"rules"`
}

// RulesSpec has one section per rule.
type RulesSpec struct {
	DefaultResources    DefaultResourcesSpec    `json:"defaultResources,omitempty"`
	RequestsEqualLimits RequestsEqualLimitsSpec `json:"requestsEqualLimits,omitempty"`
	MaxResources        MaxResourcesSpec        `json:"maxResources,omitempty"`
	NoPersistentVolumes NoPersistentVolumesSpec `json:"noPersistentVolumes,omitempty"`
	EphemeralStorage    EphemeralStorageSpec    `json:"ephemeralStorage,omitempty"`
	EnvSecrets          EnvSecretsSpec          `json:"envSecrets,omitempty"`
	ServiceAccount      ServiceAccountSpec      `json:"serviceAccount,omitempty"`
	ImagePullSecrets    ImagePullSecretsSpec    `json:"imagePullSecrets,omitempty"`
	NodePool            NodePoolSpec            `json:"nodePool,omitempty"`
	ImageArchitecture   ImageArchitectureSpec   `json:"imageArchitecture,omitempty"`
}

// ResourcesSpec is a set of requests and limits, like a container's.
type ResourcesSpec struct {
	Requests ResourceAmounts `json:"requests,omitempty"`
	Limits   ResourceAmounts `json:"limits,omitempty"`
}

// ResourceAmounts maps a resource name to a quantity.
type ResourceAmounts map[corev1.ResourceName]Amount

// Amount is a quantity as written: "500m", "2Gi", or a bare YAML number
// such as 0.5, the way the Kubernetes Python client writes them.
type Amount string

// UnmarshalJSON accepts a JSON string or number. Anything else is kept as
// written, for validation to refuse with its field path.
func (a *Amount) UnmarshalJSON(b []byte) error {
	*a = Amount(jsonText(b))
	return nil
}

// jsonText is a JSON string's content, or any other JSON value as written.
func jsonText(b []byte) string {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return s
	}
	return string(bytes.TrimSpace(b))
}

// DefaultResourcesSpec configures the default-resources rule.
type DefaultResourcesSpec struct {
	Mode Mode `json:"mode,omitempty"`
	// Requests and Limits are the namespace's default pod size.
	ResourcesSpec `json:",inline"`
	// Containers gives other defaults to containers by name.
	Containers map[string]ResourcesSpec `json:"containers,omitempty"`
}

// RequestsEqualLimitsSpec configures the requests-equal-limits rule.
type RequestsEqualLimitsSpec struct {
	Mode      Mode                  `json:"mode,omitempty"`
	Resources []corev1.ResourceName `json:"resources,omitempty"`
}

// MaxResourcesSpec configures the max-resources rule.
type MaxResourcesSpec struct {
	Mode      Mode            `json:"mode,omitempty"`
	Container ResourceAmounts `json:"container,omitempty"`
	Pod       ResourceAmounts `json:"pod,omitempty"`
}

// NoPersistentVolumesSpec configures the no-persistent-volumes rule.
type NoPersistentVolumesSpec struct {
	Mode          Mode  `json:"mode,omitempty"`
	AllowHostPath *bool `json:"allowHostPath,omitempty"`
	// AllowVolumeTypes admits more volume types by their field name, such
	// as csi for a secrets-store driver.
	AllowVolumeTypes []string `json:"allowVolumeTypes,omitempty"`
}

// EphemeralStorageSpec configures the ephemeral-storage rule.
type EphemeralStorageSpec struct {
	Mode Mode `json:"mode,omitempty"`
	// AllowEmptyDir admits emptyDir volumes in every queue.
	AllowEmptyDir *bool `json:"allowEmptyDir,omitempty"`
	// AllowedQueues admits emptyDir volumes for pods in these queues only.
	AllowedQueues    []string `json:"allowedQueues,omitempty"`
	DefaultSizeLimit Amount   `json:"defaultSizeLimit,omitempty"`
	MaxSizeLimit     Amount   `json:"maxSizeLimit,omitempty"`
}

// EnvSecretsSpec configures the env-secrets rule.
type EnvSecretsSpec struct {
	Mode       Mode     `json:"mode,omitempty"`
	SecretName string   `json:"secretName,omitempty"`
	Containers []string `json:"containers,omitempty"`
}

// ServiceAccountSpec configures the service-account rule.
type ServiceAccountSpec struct {
	Mode    Mode     `json:"mode,omitempty"`
	Allowed []string `json:"allowed,omitempty"`
}

// ImagePullSecretsSpec configures the image-pull-secrets rule.
type ImagePullSecretsSpec struct {
	Mode       Mode                 `json:"mode,omitempty"`
	Registries []RegistrySecretSpec `json:"registries,omitempty"`
}

// RegistrySecretSpec names the pull secrets for images under a prefix.
type RegistrySecretSpec struct {
	// Prefix is a registry host, optionally followed by a repository path:
	// "registry.example.com" or "registry.example.com/team-a".
	Prefix  string   `json:"prefix"`
	Secrets []string `json:"secrets"`
}

// NodePoolSpec configures the node-pool rule.
type NodePoolSpec struct {
	Mode Mode `json:"mode,omitempty"`
	// DefaultQueue is the queue of a pod whose queue no other source gives.
	DefaultQueue string `json:"defaultQueue,omitempty"`
	// QueueLabel, when set, lets a pod choose one of Queues with this label.
	QueueLabel string `json:"queueLabel,omitempty"`
	// AllowNodeName admits pods that name their node and so skip the pool.
	AllowNodeName *bool                `json:"allowNodeName,omitempty"`
	Queues        map[string]QueueSpec `json:"queues,omitempty"`
	// Parent takes the queue from the worker that launched the pod.
	Parent ParentSpec `json:"parent,omitempty"`
}

// ParentSpec says how a task pod's queue follows the Airflow worker that
// launched it, found from the identity of the request that creates the pod.
type ParentSpec struct {
	// Source is where the queue comes from: off (the worker is not
	// consulted), label (a label of the worker names the queue) or inherit
	// (the task gets the worker's own placement).
	Source ParentSource `json:"source,omitempty"`
	// QueueLabels are the worker's label keys that name its queue, tried
	// in order; with source label.
	QueueLabels []string `json:"queueLabels,omitempty"`
	// NodeLabels are labels of the worker's node copied into the task's
	// nodeSelector, such as node.kubernetes.io/instance-type; with source
	// inherit.
	NodeLabels []string `json:"nodeLabels,omitempty"`
	// Fallbacks are tried in order when the worker cannot be found.
	Fallbacks []Fallback `json:"fallbacks,omitempty"`
	// OutOfClusterFallbacks replace Fallbacks for pods that KPO created
	// from a kubeconfig (label airflow_kpo_in_cluster: "False").
	OutOfClusterFallbacks []Fallback `json:"outOfClusterFallbacks,omitempty"`
	// OnConflict says what happens to a pod that asks for another node
	// pool than its worker's: deny or override.
	OnConflict OnConflict `json:"onConflict,omitempty"`
}

// QueueSpec is where a queue's pods run.
type QueueSpec struct {
	NodeSelector     map[string]string                `json:"nodeSelector,omitempty"`
	Tolerations      []corev1.Toleration              `json:"tolerations,omitempty"`
	MatchExpressions []corev1.NodeSelectorRequirement `json:"matchExpressions,omitempty"`
}

// ImageArchitectureSpec configures the image-architecture rule and the
// registry lookups that feed it.
type ImageArchitectureSpec struct {
	Mode            Mode     `json:"mode,omitempty"`
	Architectures   []string `json:"architectures,omitempty"`
	OS              string   `json:"os,omitempty"`
	OnLookupFailure string   `json:"onLookupFailure,omitempty"`
	// LookupTimeout bounds the lookups of one admission, as a Go duration.
	LookupTimeout string `json:"lookupTimeout,omitempty"`
	// TrustedImages are repositories never looked up: exact, or a prefix
	// ending in /*, such as "registry.internal/platform/*".
	TrustedImages []string `json:"trustedImages,omitempty"`
	// UsePullSecrets reads the pod's imagePullSecrets and its service
	// account's through the API to authenticate lookups.
	UsePullSecrets *bool          `json:"usePullSecrets,omitempty"`
	Registries     []RegistrySpec `json:"registries,omitempty"`
	// OnlyListedRegistries makes kpoguard ask no registry missing from
	// Registries: their images fail the lookup, and onLookupFailure decides.
	OnlyListedRegistries *bool `json:"onlyListedRegistries,omitempty"`
}

// RegistrySpec names a registry for metrics, and says how to reach it.
type RegistrySpec struct {
	Name string `json:"name"`
	// Host is the registry as images name it: docker.io, registry.internal:5000.
	Host string `json:"host"`
	// Mirror is asked instead: a host, optionally with a path prefix.
	Mirror string `json:"mirror,omitempty"`
	// Insecure allows plaintext HTTP to the registry (or its mirror).
	Insecure bool `json:"insecure,omitempty"`
}
