package policy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestImageArchitecture(t *testing.T) {
	amd64 := Platform{OS: "linux", Architecture: "amd64"}
	arm64 := Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	armv7 := Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	winAmd64 := Platform{OS: "windows", Architecture: "amd64"}

	const lookupFix = "make sure the image exists and the registry is reachable, or ask your platform team"
	const amd64Fix = "build the image for linux/amd64: docker buildx build --platform linux/amd64, or FROM --platform=linux/amd64 in the Dockerfile"
	v := func(mode Mode, subject, path, msg, fix string) Violation {
		return Violation{Rule: ImageArchitecture, Mode: mode, Subject: subject, Path: path, Message: msg, Fix: fix}
	}
	wrongArch := func(image, path, built string) Violation {
		return v(Enforce, `image "`+image+`"`, path,
			"is built only for "+built+`, but this cluster runs linux/amd64; it would fail with "exec format error"`, amd64Fix)
	}
	lookup := func(mode Mode, image, path, reason string) Violation {
		return v(mode, `image "`+image+`"`, path, "its platforms could not be checked: "+reason, lookupFix)
	}

	withSelector := func(p *corev1.Pod, sel map[string]string) *corev1.Pod {
		p.Spec.NodeSelector = sel
		return p
	}

	tests := []struct {
		name  string
		rules string
		pod   *corev1.Pod
		facts Facts
		want  []Violation
	}{
		{
			name:  "no facts: only the nodeSelector is checked",
			rules: "imageArchitecture: {}\n",
			pod:   podWithImages("ubuntu:22.04"),
		},
		{
			name:  "a nodeSelector for another architecture",
			rules: "imageArchitecture: {}\n",
			pod:   withSelector(podWithImages("ubuntu:22.04"), map[string]string{"kubernetes.io/arch": "arm64"}),
			want: []Violation{v(Enforce, "nodeSelector kubernetes.io/arch=arm64", "spec.nodeSelector[kubernetes.io/arch]",
				"this cluster runs only linux/amd64 nodes", "remove the nodeSelector and use an image built for linux/amd64")},
		},
		{
			name:  "a nodeSelector for the cluster's architecture and OS",
			rules: "imageArchitecture: {}\n",
			pod:   withSelector(podWithImages("ubuntu:22.04"), map[string]string{"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}),
		},
		{
			name:  "a nodeSelector for another OS",
			rules: "imageArchitecture: {}\n",
			pod:   withSelector(podWithImages("ubuntu:22.04"), map[string]string{"kubernetes.io/os": "windows"}),
			want: []Violation{v(Enforce, "nodeSelector kubernetes.io/os=windows", "spec.nodeSelector[kubernetes.io/os]",
				"this cluster runs only linux nodes", "remove the nodeSelector")},
		},
		{
			name:  "a multi-architecture cluster",
			rules: "imageArchitecture: {architectures: [amd64, arm64]}\n",
			pod:   withSelector(podWithImages("app"), map[string]string{"kubernetes.io/arch": "s390x"}),
			facts: Facts{Images: map[string]ImageFacts{"app": {Platforms: []Platform{armv7}}}},
			want: []Violation{
				v(Enforce, "nodeSelector kubernetes.io/arch=s390x", "spec.nodeSelector[kubernetes.io/arch]",
					"this cluster runs only linux/amd64 or linux/arm64 nodes", "remove the nodeSelector and use an image built for linux/amd64 or linux/arm64"),
				v(Enforce, `image "app"`, "spec.containers[0].image",
					`is built only for linux/arm/v7, but this cluster runs linux/amd64 or linux/arm64; it would fail with "exec format error"`,
					"build the image for linux/amd64: docker buildx build --platform linux/amd64,linux/arm64, or FROM --platform=linux/amd64 in the Dockerfile"),
			},
		},
		{
			name:  "an arm64 image in a multi-architecture cluster",
			rules: "imageArchitecture: {architectures: [amd64, arm64]}\n",
			pod:   podWithImages("app"),
			facts: Facts{Images: map[string]ImageFacts{"app": {Platforms: []Platform{arm64}}}},
		},
		{
			name:  "an image with the right platform among others",
			rules: "imageArchitecture: {}\n",
			pod:   podWithImages("ubuntu:22.04"),
			facts: Facts{Images: map[string]ImageFacts{"ubuntu:22.04": {Platforms: []Platform{arm64, amd64, armv7}}}},
		},
		{
			name:  "an image built only for arm",
			rules: "imageArchitecture: {}\n",
			pod:   podWithImages("ghcr.io/org/app:1"),
			facts: Facts{Images: map[string]ImageFacts{"ghcr.io/org/app:1": {Platforms: []Platform{arm64, armv7}}}},
			want:  []Violation{wrongArch("ghcr.io/org/app:1", "spec.containers[0].image", "linux/arm64/v8, linux/arm/v7")},
		},
		{
			name:  "the right architecture on the wrong OS",
			rules: "imageArchitecture: {}\n",
			pod:   podWithImages("win"),
			facts: Facts{Images: map[string]ImageFacts{"win": {Platforms: []Platform{winAmd64}}}},
			want:  []Violation{wrongArch("win", "spec.containers[0].image", "windows/amd64")},
		},
		{
			name:  "no known platform",
			rules: "imageArchitecture: {}\n",
			pod:   podWithImages("odd"),
			facts: Facts{Images: map[string]ImageFacts{"odd": {}}},
			want:  []Violation{wrongArch("odd", "spec.containers[0].image", "no known platform")},
		},
		{
			name:  "a failed lookup is a warning when onLookupFailure is allow (the default)",
			rules: "imageArchitecture: {}\n",
			pod:   podWithImages("private/app"),
			facts: Facts{Images: map[string]ImageFacts{"private/app": {Err: "401 Unauthorized"}}},
			want:  []Violation{lookup(Warn, "private/app", "spec.containers[0].image", "401 Unauthorized")},
		},
		{
			name:  "a failed lookup is denied when onLookupFailure is deny",
			rules: "imageArchitecture: {onLookupFailure: deny}\n",
			pod:   podWithImages("private/app"),
			facts: Facts{Images: map[string]ImageFacts{"private/app": {Err: "timeout"}}},
			want:  []Violation{lookup(Enforce, "private/app", "spec.containers[0].image", "timeout")},
		},
		{
			name:  "an image missing from the facts counts as a failed lookup",
			rules: "imageArchitecture: {onLookupFailure: deny}\n",
			pod:   podWithImages("ubuntu:22.04", "alpine"),
			facts: Facts{Images: map[string]ImageFacts{"ubuntu:22.04": {Platforms: []Platform{amd64}}}},
			want:  []Violation{lookup(Enforce, "alpine", "spec.containers[1].image", "was not looked up")},
		},
		{
			name:  "a lookup failure in a warn-mode rule stays a warning",
			rules: "imageArchitecture: {mode: warn, onLookupFailure: deny}\n",
			pod:   podWithImages("a"),
			facts: Facts{Images: map[string]ImageFacts{}},
			want:  []Violation{lookup(Warn, "a", "spec.containers[0].image", "was not looked up")},
		},
		{
			name:  "softening never hardens an audit-mode rule",
			rules: "imageArchitecture: {mode: audit}\n",
			pod:   podWithImages("a"),
			facts: Facts{Images: map[string]ImageFacts{"a": {Err: "boom"}}},
			want:  []Violation{lookup(Audit, "a", "spec.containers[0].image", "boom")},
		},
		{
			name:  "each image is checked once, at its first use, including init and ephemeral containers",
			rules: "imageArchitecture: {}\n",
			pod: func() *corev1.Pod {
				p := podWithImages("arm", "ok", "arm")
				p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "arm-init"}}
				p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "arm-debug"}}}
				return p
			}(),
			facts: Facts{Images: map[string]ImageFacts{
				"arm": {Platforms: []Platform{arm64}}, "ok": {Platforms: []Platform{amd64}},
				"arm-init": {Platforms: []Platform{arm64}}, "arm-debug": {Platforms: []Platform{arm64}},
			}},
			want: []Violation{
				wrongArch("arm", "spec.containers[0].image", "linux/arm64/v8"),
				wrongArch("arm-init", "spec.initContainers[0].image", "linux/arm64/v8"),
				wrongArch("arm-debug", "spec.ephemeralContainers[0].image", "linux/arm64/v8"),
			},
		},
		{
			name:  "a custom OS",
			rules: "imageArchitecture: {os: windows}\n",
			pod:   withSelector(podWithImages("win"), map[string]string{"kubernetes.io/os": "linux"}),
			facts: Facts{Images: map[string]ImageFacts{"win": {Platforms: []Platform{winAmd64}}}},
			want: []Violation{v(Enforce, "nodeSelector kubernetes.io/os=linux", "spec.nodeSelector[kubernetes.io/os]",
				"this cluster runs only windows nodes", "remove the nodeSelector")},
		},
		{
			name:  "trusted images are neither looked up nor checked",
			rules: "imageArchitecture: {trustedImages: [\"registry.internal/platform/*\"]}\n",
			pod:   podWithImages("registry.internal/platform/base:1", "registry.internal/team/app:1"),
			facts: Facts{Images: map[string]ImageFacts{"registry.internal/team/app:1": {Platforms: []Platform{arm64}}}},
			want:  []Violation{wrongArch("registry.internal/team/app:1", "spec.containers[1].image", "linux/arm64/v8")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, ImageArchitecture, tt.rules)
			assertViolations(t, rs.Validate(tt.pod, tt.facts), tt.want)
		})
	}
}

func TestImages(t *testing.T) {
	p := taskPod(ctr("a", corev1.ResourceRequirements{}), ctr("b", corev1.ResourceRequirements{}))
	p.Spec.Containers[1].Image = "alpine"
	p.Spec.InitContainers = []corev1.Container{{Name: "i", Image: "busybox"}, {Name: "j", Image: "alpine"}}
	p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "d", Image: "debug"}}}
	got := Images(p)
	want := []string{"ubuntu:22.04", "alpine", "busybox", "debug"}
	if len(got) != len(want) {
		t.Fatalf("Images = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Images = %q, want %q", got, want)
		}
	}
}

func TestPlatformString(t *testing.T) {
	for p, want := range map[Platform]string{
		{OS: "linux", Architecture: "amd64"}:                "linux/amd64",
		{OS: "linux", Architecture: "arm64", Variant: "v8"}: "linux/arm64/v8",
	} {
		if got := p.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", p, got, want)
		}
	}
}

func TestTrusted(t *testing.T) {
	cfg := ImageArchitectureConfig{TrustedImages: []string{"registry.internal/platform/*", "alpine", "ghcr.io/org/tool", "docker.io/bitnami/*"}}
	for image, want := range map[string]bool{
		"registry.internal/platform/base:1":                  true,
		"REGISTRY.internal/platform/team/base@sha256:" + "a": true,
		"registry.internal/platformer/base:1":                false,
		"registry.internal/platform":                         false,
		"alpine":                                             true,
		"alpine:3.20":                                        true,
		"docker.io/library/alpine:3.20":                      true,
		"index.docker.io/library/alpine":                     true,
		"alpine/git":                                         false,
		"ghcr.io/org/tool:2":                                 true,
		"ghcr.io/org/tool/sub:2":                             false,
		"bitnami/postgresql:16":                              true,
		"ubuntu:22.04":                                       false,
	} {
		if got := cfg.Trusted(image); got != want {
			t.Errorf("Trusted(%q) = %v, want %v", image, got, want)
		}
	}
}

func TestAddedImages(t *testing.T) {
	old := podWithImages("a:1", "b:1")
	pod := podWithImages("a:1", "c:1", "b:1")
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "d:1"}}}
	got := AddedImages(pod, old)
	want := map[string]string{"c:1": "spec.containers[1].image", "d:1": "spec.ephemeralContainers[0].image"}
	if len(got) != len(want) || got["c:1"] != want["c:1"] || got["d:1"] != want["d:1"] {
		t.Errorf("AddedImages = %v, want %v", got, want)
	}
	if got := AddedImages(old, old); len(got) != 0 {
		t.Errorf("an unchanged pod adds %v", got)
	}
}
