package policy

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ImagePullSecrets is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const ImagePullSecrets RuleID = "image-pull-secrets"

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

// ImagePullSecretsConfig is the compiled, typed imagePullSecrets section.
type ImagePullSecretsConfig struct {
	Mode       Mode
	Registries []RegistrySecretSpec
}

// imagePullSecrets adds the configured pull secrets to pods that use images
// from private registries, so DAG authors need not name them.
//
// Reads every image; appends to spec.imagePullSecrets the secrets it lacks.
func imagePullSecrets(pod *corev1.Pod, in *input) []Change {
	var changes []Change
	refs := images(pod)
	repos := make([]string, len(refs))
	for i, r := range refs {
		repos[i] = Repository(r.image)
	}
	for _, reg := range in.rules.ImagePullSecrets.Registries {
		if !slices.ContainsFunc(repos, func(repo string) bool { return underPrefix(repo, reg.Prefix) }) {
			continue
		}
		for _, name := range reg.Secrets {
			if slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(s corev1.LocalObjectReference) bool { return s.Name == name }) {
				continue
			}
			pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
			changes = append(changes, Change{
				Path:  field.NewPath("spec", "imagePullSecrets").Index(len(pod.Spec.ImagePullSecrets) - 1).String(),
				Value: name,
			})
		}
	}
	return changes
}

func underPrefix(repo, prefix string) bool {
	return repo == prefix || strings.HasPrefix(repo, prefix+"/")
}

// Repository returns an image reference's registry host and repository path
// with Docker's defaults filled in: "ubuntu:22.04" is
// "docker.io/library/ubuntu", "ghcr.io/org/app@sha256:..." is
// "ghcr.io/org/app".
func Repository(image string) string {
	name, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	host, path, found := strings.Cut(name, "/")
	if !found || !looksLikeHost(host) {
		host, path = "docker.io", name // no registry host: Docker Hub
	}
	repo := normalizeHost(host + "/" + path)
	if rest, ok := strings.CutPrefix(repo, "docker.io/"); ok && !strings.Contains(rest, "/") {
		return "docker.io/library/" + rest // Docker Hub's official images
	}
	return repo
}

// looksLikeHost tells a registry host from the first path segment of a
// Docker Hub repository, as Docker does.
func looksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}

// normalizeHost lower-cases the registry host of "host/path" and names
// Docker Hub by one name.
func normalizeHost(ref string) string {
	host, path, _ := strings.Cut(ref, "/")
	host = strings.ToLower(host)
	if host == "index.docker.io" || host == "registry-1.docker.io" {
		host = "docker.io"
	}
	if path == "" {
		return host
	}
	return host + "/" + path
}

func compileImagePullSecrets(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("imagePullSecrets")
	rs.ImagePullSecrets = ImagePullSecretsConfig{
		Mode:       c.mode(spec.ImagePullSecrets.Mode, p.Child("mode")),
		Registries: spec.ImagePullSecrets.Registries,
	}
	for i, reg := range spec.ImagePullSecrets.Registries {
		rp := p.Child("registries").Index(i)
		// Compare prefixes the way image references are compared.
		rs.ImagePullSecrets.Registries[i].Prefix = normalizeHost(reg.Prefix)
		if reg.Prefix == "" || strings.Contains(reg.Prefix, "://") || strings.HasSuffix(reg.Prefix, "/") {
			c.add(field.Invalid(rp.Child("prefix"), reg.Prefix, `must be a registry host with an optional repository path, such as "registry.example.com/team-a"`))
		}
		if len(reg.Secrets) == 0 {
			c.add(field.Required(rp.Child("secrets"), "name at least one pull secret"))
		}
		for j, s := range reg.Secrets {
			c.dnsSubdomain(s, rp.Child("secrets").Index(j))
		}
	}
}
