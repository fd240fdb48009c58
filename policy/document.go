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
