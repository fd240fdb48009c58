package policy

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestRepository(t *testing.T) {
	tests := []struct {
		image, want string
	}{
		{image: "ubuntu", want: "docker.io/library/ubuntu"},
		{image: "ubuntu:22.04", want: "docker.io/library/ubuntu"},
		{image: "ubuntu@" + digest, want: "docker.io/library/ubuntu"},
		{image: "ubuntu:22.04@" + digest, want: "docker.io/library/ubuntu"},
		{image: "library/ubuntu:22.04", want: "docker.io/library/ubuntu"},
		{image: "myorg/app:1.0", want: "docker.io/myorg/app"},
		{image: "myorg/team/app", want: "docker.io/myorg/team/app"},
		{image: "docker.io/library/ubuntu:22.04", want: "docker.io/library/ubuntu"},
		{image: "docker.io/myorg/app", want: "docker.io/myorg/app"},
		{image: "index.docker.io/myorg/app:1", want: "docker.io/myorg/app"},
		{image: "registry-1.docker.io/myorg/app", want: "docker.io/myorg/app"},
		{image: "Docker.IO/myorg/app", want: "docker.io/myorg/app"},
		{image: "ghcr.io/org/app@" + digest, want: "ghcr.io/org/app"},
		{image: "ghcr.io/org/app:1.2@" + digest, want: "ghcr.io/org/app"},
		{image: "Registry.Example.COM/team-a/app:1", want: "registry.example.com/team-a/app"},
		{image: "registry.example.com:5000/app", want: "registry.example.com:5000/app"},
		{image: "registry.example.com:5000/team/app:1.0", want: "registry.example.com:5000/team/app"},
		{image: "registry.example.com:5000/app@" + digest, want: "registry.example.com:5000/app"},
		{image: "localhost/app", want: "localhost/app"},
		{image: "localhost:5000/app:dev", want: "localhost:5000/app"},
		{image: "registry:5000/app", want: "registry:5000/app"},
		{image: "alpine", want: "docker.io/library/alpine"},
		// Docker normalises a single-component Docker Hub path under
		// library/ whichever way the host is written.
		{image: "docker.io/ubuntu:22.04", want: "docker.io/library/ubuntu"},
		{image: "index.docker.io/ubuntu", want: "docker.io/library/ubuntu"},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			if got := Repository(tt.image); got != tt.want {
				t.Errorf("Repository(%q) = %q, want %q", tt.image, got, tt.want)
			}
		})
	}
}

func TestUnderPrefix(t *testing.T) {
	tests := []struct {
		repo, prefix string
		want         bool
	}{
		{"registry.example.com/team-a/app", "registry.example.com", true},
		{"registry.example.com/team-a/app", "registry.example.com/team-a", true},
		{"registry.example.com/team-a", "registry.example.com/team-a", true},
		{"registry.example.com/team-ab/app", "registry.example.com/team-a", false},
		{"registry.example.com.evil.io/app", "registry.example.com", false},
		{"registry.example.com:5000/app", "registry.example.com", false},
		{"registry.example.com:5000/app", "registry.example.com:5000", true},
		{"docker.io/library/ubuntu", "docker.io", true},
	}
	for _, tt := range tests {
		if got := underPrefix(tt.repo, tt.prefix); got != tt.want {
			t.Errorf("underPrefix(%q, %q) = %v, want %v", tt.repo, tt.prefix, got, tt.want)
		}
	}
}

func TestImagePullSecrets(t *testing.T) {
	const rules = "imagePullSecrets:\n" +
		"  registries:\n" +
		"  - {prefix: registry.example.com, secrets: [corp-pull]}\n" +
		"  - {prefix: registry.example.com/team-a, secrets: [team-a-pull, corp-pull]}\n" +
		"  - {prefix: registry.example.com:5000, secrets: [port-pull]}\n" +
		"  - {prefix: docker.io/myorg, secrets: [hub-myorg]}\n" +
		"  - {prefix: docker.io/library, secrets: [hub-library]}\n"
	ch := func(i, name string) Change {
		return Change{Rule: ImagePullSecrets, Mode: Enforce, Path: "spec.imagePullSecrets[" + i + "]", Value: name}
	}
	refs := func(names ...string) []corev1.LocalObjectReference {
		out := []corev1.LocalObjectReference{}
		for _, n := range names {
			out = append(out, corev1.LocalObjectReference{Name: n})
		}
		return out
	}

	tests := []struct {
		name     string
		pod      *corev1.Pod
		existing []corev1.LocalObjectReference
		want     []Change
		wantRefs []corev1.LocalObjectReference
	}{
		{name: "a public image gets nothing", pod: podWithImages("ghcr.io/org/app:1")},
		{name: "an image under a registry host", pod: podWithImages("registry.example.com/tools/app:1"),
			want: []Change{ch("0", "corp-pull")}, wantRefs: refs("corp-pull")},
		{name: "nested prefixes: each matching registry adds its secrets once", pod: podWithImages("registry.example.com/team-a/app:1"),
			want: []Change{ch("0", "corp-pull"), ch("1", "team-a-pull")}, wantRefs: refs("corp-pull", "team-a-pull")},
		{name: "a prefix matches whole path components", pod: podWithImages("registry.example.com/team-ab/app:1"),
			want: []Change{ch("0", "corp-pull")}, wantRefs: refs("corp-pull")},
		{name: "the host is matched case-insensitively", pod: podWithImages("Registry.Example.COM/tools/app"),
			want: []Change{ch("0", "corp-pull")}, wantRefs: refs("corp-pull")},
		{name: "a digest reference", pod: podWithImages("registry.example.com/tools/app@" + digest),
			want: []Change{ch("0", "corp-pull")}, wantRefs: refs("corp-pull")},
		{name: "a port in the host is part of the registry", pod: podWithImages("registry.example.com:5000/app:1"),
			want: []Change{ch("0", "port-pull")}, wantRefs: refs("port-pull")},
		{name: "a look-alike host does not match", pod: podWithImages("registry.example.com.evil.io/app:1")},
		{name: "Docker Hub user images through Repository's defaults", pod: podWithImages("myorg/app:1"),
			want: []Change{ch("0", "hub-myorg")}, wantRefs: refs("hub-myorg")},
		{name: "Docker Hub official images through Repository's defaults", pod: podWithImages("ubuntu:22.04"),
			want: []Change{ch("0", "hub-library")}, wantRefs: refs("hub-library")},
		{name: "index.docker.io is Docker Hub", pod: podWithImages("index.docker.io/myorg/app"),
			want: []Change{ch("0", "hub-myorg")}, wantRefs: refs("hub-myorg")},
		{name: "docker.io/ubuntu is an official image", pod: podWithImages("docker.io/ubuntu:22.04"),
			want: []Change{ch("0", "hub-library")}, wantRefs: refs("hub-library")},
		{name: "secrets the pod names already are not added again", pod: podWithImages("registry.example.com/team-a/app"),
			existing: refs("other", "team-a-pull"),
			want:     []Change{ch("2", "corp-pull")}, wantRefs: refs("other", "team-a-pull", "corp-pull")},
		{name: "all present: nothing to do", pod: podWithImages("registry.example.com/team-a/app"),
			existing: refs("corp-pull", "team-a-pull"), wantRefs: refs("corp-pull", "team-a-pull")},
		{name: "several images, registries in policy order", pod: podWithImages("myorg/app", "registry.example.com:5000/x", "registry.example.com/y"),
			want:     []Change{ch("0", "corp-pull"), ch("1", "port-pull"), ch("2", "hub-myorg")},
			wantRefs: refs("corp-pull", "port-pull", "hub-myorg")},
		{name: "init container images count", pod: func() *corev1.Pod {
			p := podWithImages("ghcr.io/org/app")
			c := ctr("init", corev1.ResourceRequirements{})
			c.Image = "registry.example.com/init:1"
			p.Spec.InitContainers = []corev1.Container{c}
			return p
		}(), want: []Change{ch("0", "corp-pull")}, wantRefs: refs("corp-pull")},
		{name: "ephemeral container images count", pod: func() *corev1.Pod {
			p := podWithImages("ghcr.io/org/app")
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: "registry.example.com:5000/debug"}}}
			return p
		}(), want: []Change{ch("0", "port-pull")}, wantRefs: refs("port-pull")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, ImagePullSecrets, rules)
			pod := tt.pod.DeepCopy()
			pod.Spec.ImagePullSecrets = append([]corev1.LocalObjectReference{}, tt.existing...) // KPO sends []
			assertChanges(t, rs.Mutate(pod, Facts{}), tt.want)
			if len(tt.wantRefs) == 0 {
				tt.wantRefs = []corev1.LocalObjectReference{}
			}
			if !reflect.DeepEqual(pod.Spec.ImagePullSecrets, tt.wantRefs) {
				t.Errorf("imagePullSecrets = %v, want %v", pod.Spec.ImagePullSecrets, tt.wantRefs)
			}
			assertChanges(t, rs.Mutate(pod, Facts{}), nil)
		})
	}
}

// A registry prefix written with an upper-case host never matches, since
// Repository lower-cases the image's host.
func TestImagePullSecretsPrefixHostCase(t *testing.T) {
	p, err := Load([]byte(doc("imagePullSecrets:\n  registries:\n  - {prefix: Registry.Example.com, secrets: [corp-pull]}\n")))
	if err != nil {
		return // rejecting the prefix at load time is a fine fix too
	}
	rs, err := p.RulesFor(Namespace{Name: "team-a"})
	if err != nil {
		t.Fatal(err)
	}
	pod := taskPod(ctr("base", corev1.ResourceRequirements{}))
	pod.Spec.Containers[0].Image = "registry.example.com/app:1"
	got := only(rs, ImagePullSecrets).Mutate(pod, Facts{})
	if len(got) != 1 {
		t.Fatal("prefix \"Registry.Example.com\" is accepted by Load but never matches (Repository lower-cases hosts, " +
			"compile.go:115-127 does not); lower-case the prefix's host at load time or reject it")
	}
}
