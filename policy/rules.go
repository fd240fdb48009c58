package policy

// RuleID names a rule the same way in policy keys' documentation, messages,
// metric labels and the audit annotation.
type RuleID string

// Each rule declares its ID in its own file; the rule table (engine.go)
// orders them.

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
