package policy

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// RuleID names a rule the same way in policy keys' documentation, messages,
// metric labels and the audit annotation.
type RuleID string

// The rules, in the order they run.
const (
	DefaultResources    RuleID = "default-resources"
	RequestsEqualLimits RuleID = "requests-equal-limits"
	MaxResources        RuleID = "max-resources"
	NoPersistentVolumes RuleID = "no-persistent-volumes"
	EphemeralStorage    RuleID = "ephemeral-storage"
	EnvSecrets          RuleID = "env-secrets"
	ServiceAccount      RuleID = "service-account"
	ImagePullSecrets    RuleID = "image-pull-secrets"
	NodePool            RuleID = "node-pool"
	ImageArchitecture   RuleID = "image-architecture"
)

// Mode says what a rule does with what it finds.
type Mode string

const (
	// Off skips the rule.
	Off Mode = "off"
	// Audit records what the rule would do, in the API server's audit log
	// and in metrics, and changes nothing.
	Audit Mode = "audit"
	// Warn admits the pod with a kubectl warning and changes nothing.
	Warn Mode = "warn"
	// Enforce mutates the pod or denies it.
	Enforce Mode = "enforce"
)

var modes = []Mode{Off, Audit, Warn, Enforce}

// UnmarshalJSON reads YAML 1.1's bare `off` (decoded as false) as Off;
// anything else that is not a string is kept as written, for validation to
// refuse with its field path.
func (m *Mode) UnmarshalJSON(b []byte) error {
	if string(b) == "false" {
		*m = Off
		return nil
	}
	*m = Mode(jsonText(b))
	return nil
}

// LookupFailure says what to do with an image whose platforms are unknown.
type LookupFailure string

const (
	AllowOnLookupFailure LookupFailure = "allow"
	DenyOnLookupFailure  LookupFailure = "deny"
)

// RuleSet is the typed, validated configuration of every rule for one
// namespace: the cluster-wide rules with that namespace's overrides merged.
type RuleSet struct {
	DefaultResources    DefaultResourcesConfig
	RequestsEqualLimits RequestsEqualLimitsConfig
	MaxResources        MaxResourcesConfig
	NoPersistentVolumes NoPersistentVolumesConfig
	EphemeralStorage    EphemeralStorageConfig
	EnvSecrets          EnvSecretsConfig
	ServiceAccount      ServiceAccountConfig
	ImagePullSecrets    ImagePullSecretsConfig
	NodePool            NodePoolConfig
	ImageArchitecture   ImageArchitectureConfig
}

// Mode returns the mode of a rule; Off for an unknown one.
func (rs *RuleSet) Mode(id RuleID) Mode {
	if r, ok := ruleByID(id); ok {
		return *r.mode(rs)
	}
	return Off
}

type DefaultResourcesConfig struct {
	Mode       Mode
	Default    corev1.ResourceRequirements
	Containers map[string]corev1.ResourceRequirements
}

type RequestsEqualLimitsConfig struct {
	Mode      Mode
	Resources []corev1.ResourceName
}

type MaxResourcesConfig struct {
	Mode      Mode
	Container corev1.ResourceList
	Pod       corev1.ResourceList
}

type NoPersistentVolumesConfig struct {
	Mode             Mode
	AllowHostPath    bool
	AllowVolumeTypes []string
}

type EphemeralStorageConfig struct {
	Mode             Mode
	AllowEmptyDir    bool
	AllowedQueues    []string
	DefaultSizeLimit *resource.Quantity
	MaxSizeLimit     *resource.Quantity
}

type EnvSecretsConfig struct {
	Mode       Mode
	SecretName string
	Containers []string
}

type ServiceAccountConfig struct {
	Mode    Mode
	Allowed []string
}

type ImagePullSecretsConfig struct {
	Mode       Mode
	Registries []RegistrySecretSpec
}

type NodePoolConfig struct {
	Mode          Mode
	DefaultQueue  string
	QueueLabel    string
	AllowNodeName bool
	Queues        map[string]QueueSpec
	Parent        ParentConfig
}

type ImageArchitectureConfig struct {
	Mode            Mode
	Architectures   []string
	OS              string
	OnLookupFailure LookupFailure
	LookupTimeout   time.Duration
	TrustedImages   []string
	UsePullSecrets  bool
	Registries      []RegistrySpec
	// OnlyListedRegistries: images of other registries are not looked up.
	OnlyListedRegistries bool
}
