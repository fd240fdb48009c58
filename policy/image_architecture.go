package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ImageArchitecture is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const ImageArchitecture RuleID = "image-architecture"

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

// ImageArchitectureConfig is the compiled, typed imageArchitecture section.
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

// LookupFailure says what to do with an image whose platforms are unknown.
type LookupFailure string

// imageArchitecture refuses images that cannot run on the cluster's nodes,
// before they die with "exec format error", and nodeSelectors that ask for
// another OS or architecture.
//
// Reads spec.nodeSelector and every image; the images' platforms come from
// Facts.Images (nil: no lookups were made, only the nodeSelector is
// checked). Trusted images are not checked. An image whose lookup failed
// follows onLookupFailure: deny, or allow with a warning.
func imageArchitecture(pod *corev1.Pod, in *input) []Violation {
	cfg := in.rules.ImageArchitecture
	want := make([]string, len(cfg.Architectures))
	for i, arch := range cfg.Architectures {
		want[i] = cfg.OS + "/" + arch
	}
	wantText := strings.Join(want, " or ")
	var out []Violation
	if arch, ok := pod.Spec.NodeSelector[corev1.LabelArchStable]; ok && !slices.Contains(cfg.Architectures, arch) {
		out = append(out, Violation{
			Subject: fmt.Sprintf("nodeSelector %s=%s", corev1.LabelArchStable, arch),
			Path:    field.NewPath("spec", "nodeSelector").Key(corev1.LabelArchStable).String(),
			Message: fmt.Sprintf("this cluster runs only %s nodes", wantText),
			Fix:     "remove the nodeSelector and use an image built for " + wantText,
		})
	}
	if os, ok := pod.Spec.NodeSelector[corev1.LabelOSStable]; ok && os != cfg.OS {
		out = append(out, Violation{
			Subject: fmt.Sprintf("nodeSelector %s=%s", corev1.LabelOSStable, os),
			Path:    field.NewPath("spec", "nodeSelector").Key(corev1.LabelOSStable).String(),
			Message: fmt.Sprintf("this cluster runs only %s nodes", cfg.OS),
			Fix:     "remove the nodeSelector",
		})
	}
	if in.facts.Images == nil {
		return out
	}
	for _, ref := range images(pod) {
		if cfg.Trusted(ref.image) {
			continue
		}
		subject := fmt.Sprintf("image %q", ref.image)
		facts, ok := in.facts.Images[ref.image]
		if !ok || facts.Err != "" {
			reason := "was not looked up"
			if ok {
				reason = facts.Err
			}
			v := Violation{Subject: subject, Path: ref.path.String(),
				Message: "its platforms could not be checked: " + reason,
				Fix:     "make sure the image exists and the registry is reachable, or ask your platform team"}
			if cfg.OnLookupFailure == AllowOnLookupFailure {
				v.Mode = Warn
			}
			out = append(out, v)
			continue
		}
		if slices.ContainsFunc(facts.Platforms, func(p Platform) bool {
			return p.OS == cfg.OS && slices.Contains(cfg.Architectures, p.Architecture)
		}) {
			continue
		}
		out = append(out, Violation{Subject: subject, Path: ref.path.String(),
			Message: fmt.Sprintf("is built only for %s, but this cluster runs %s; it would fail with \"exec format error\"", platformList(facts.Platforms), wantText),
			Fix: fmt.Sprintf("build the image for %s: docker buildx build --platform %s, or FROM --platform=%s in the Dockerfile",
				want[0], strings.Join(want, ","), want[0])})
	}
	return out
}

// Trusted says whether an image is never looked up: its repository is
// listed in trustedImages, or lies under a listed prefix.
func (cfg ImageArchitectureConfig) Trusted(image string) bool {
	repo := Repository(image)
	for _, pat := range cfg.TrustedImages {
		if prefix, ok := strings.CutSuffix(pat, "/*"); ok {
			if strings.HasPrefix(repo, normalizeHost(prefix)+"/") {
				return true
			}
		} else if repo == Repository(pat) {
			return true
		}
	}
	return false
}

func platformList(ps []Platform) string {
	if len(ps) == 0 {
		return "no known platform"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func compileImageArchitecture(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("imageArchitecture")
	ia := spec.ImageArchitecture
	rs.ImageArchitecture = ImageArchitectureConfig{
		Mode:                 c.mode(ia.Mode, p.Child("mode")),
		Architectures:        ia.Architectures,
		OS:                   ia.OS,
		OnLookupFailure:      LookupFailure(ia.OnLookupFailure),
		LookupTimeout:        c.lookupTimeout(ia.LookupTimeout, p.Child("lookupTimeout")),
		TrustedImages:        ia.TrustedImages,
		UsePullSecrets:       *ia.UsePullSecrets,
		Registries:           ia.Registries,
		OnlyListedRegistries: *ia.OnlyListedRegistries,
	}
	c.trustedImages(ia.TrustedImages, p.Child("trustedImages"))
	c.registries(ia.Registries, p.Child("registries"))
	if len(ia.Architectures) == 0 {
		c.add(field.Required(p.Child("architectures"), "name at least one architecture, such as amd64"))
	}
	if f := LookupFailure(ia.OnLookupFailure); f != AllowOnLookupFailure && f != DenyOnLookupFailure {
		c.add(field.NotSupported(p.Child("onLookupFailure"), ia.OnLookupFailure, []string{string(AllowOnLookupFailure), string(DenyOnLookupFailure)}))
	}
}
