package policy

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestEnvSecrets(t *testing.T) {
	secretRef := func(name string, optional *bool) corev1.EnvFromSource {
		return corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: optional}}
	}
	injected := func(name string) corev1.EnvFromSource { return secretRef(name, ptr(true)) }
	configMapRef := corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}
	ch := func(i, secret string) Change {
		return Change{Rule: EnvSecrets, Mode: Enforce, Path: "spec.containers[" + i + "].envFrom[0]",
			Value: "secretRef " + secret + " (optional)"}
	}
	withEnvFrom := func(c corev1.Container, from ...corev1.EnvFromSource) corev1.Container {
		c.EnvFrom = from
		return c
	}
	named := func(name string) corev1.Container { return ctr(name, corev1.ResourceRequirements{}) }

	tests := []struct {
		name  string
		rules string
		pod   *corev1.Pod
		want  []Change
		// wantEnvFrom is every app container's envFrom afterwards.
		wantEnvFrom [][]corev1.EnvFromSource
	}{
		{
			name:        "the base container gets the secret",
			rules:       "envSecrets: {}\n",
			pod:         taskPod(withEnvFrom(named("base"))),
			want:        []Change{ch("0", "env-secrets")},
			wantEnvFrom: [][]corev1.EnvFromSource{{injected("env-secrets")}},
		},
		{
			name:        "KPO's empty envFrom list",
			rules:       "envSecrets: {}\n",
			pod:         taskPod(withEnvFrom(named("base"), []corev1.EnvFromSource{}...)),
			want:        []Change{ch("0", "env-secrets")},
			wantEnvFrom: [][]corev1.EnvFromSource{{injected("env-secrets")}},
		},
		{
			name:        "prepended first, so the author's envFrom wins",
			rules:       "envSecrets: {}\n",
			pod:         taskPod(withEnvFrom(named("base"), configMapRef, secretRef("other", nil))),
			want:        []Change{ch("0", "env-secrets")},
			wantEnvFrom: [][]corev1.EnvFromSource{{injected("env-secrets"), configMapRef, secretRef("other", nil)}},
		},
		{
			name:        "skipped when the container already references the secret",
			rules:       "envSecrets: {}\n",
			pod:         taskPod(withEnvFrom(named("base"), configMapRef, secretRef("env-secrets", nil))),
			wantEnvFrom: [][]corev1.EnvFromSource{{configMapRef, secretRef("env-secrets", nil)}},
		},
		{
			name:  "skipped when referenced with a prefix or as required",
			rules: "envSecrets: {}\n",
			pod: taskPod(withEnvFrom(named("base"), corev1.EnvFromSource{Prefix: "X_", SecretRef: &corev1.SecretEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "env-secrets"}, Optional: ptr(false)}})),
			wantEnvFrom: [][]corev1.EnvFromSource{{{Prefix: "X_", SecretRef: &corev1.SecretEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "env-secrets"}, Optional: ptr(false)}}}},
		},
		{
			name:        "a configMap of the same name is not the secret",
			rules:       "envSecrets: {}\n",
			pod:         taskPod(withEnvFrom(named("base"), corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env-secrets"}}})),
			want:        []Change{ch("0", "env-secrets")},
			wantEnvFrom: [][]corev1.EnvFromSource{{injected("env-secrets"), {ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env-secrets"}}}}},
		},
		{
			// KPO's Secret("env", KEY, "env-secrets", KEY) gives a single
			// env entry; the rule still makes every key available, and the
			// explicit env entry keeps winning over envFrom.
			name:  "a single key from the secret in env does not count as envFrom",
			rules: "envSecrets: {}\n",
			pod: func() *corev1.Pod {
				c := named("base")
				c.Env = []corev1.EnvVar{{Name: "KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "env-secrets"}, Key: "KEY"}}}}
				return taskPod(c)
			}(),
			want:        []Change{ch("0", "env-secrets")},
			wantEnvFrom: [][]corev1.EnvFromSource{{injected("env-secrets")}},
		},
		{
			name:        "the xcom sidecar and other containers are left alone",
			rules:       "envSecrets: {}\n",
			pod:         taskPod(named("helper"), named("base"), named(XComSidecar)),
			want:        []Change{ch("1", "env-secrets")},
			wantEnvFrom: [][]corev1.EnvFromSource{nil, {injected("env-secrets")}, nil},
		},
		{
			name:  "init containers are never given the secret",
			rules: "envSecrets: {}\n",
			pod: func() *corev1.Pod {
				p := taskPod(named("base"))
				p.Spec.InitContainers = []corev1.Container{named("base")}
				return p
			}(),
			want:        []Change{ch("0", "env-secrets")},
			wantEnvFrom: [][]corev1.EnvFromSource{{injected("env-secrets")}},
		},
		{
			name:        "configured secret name and containers",
			rules:       "envSecrets: {secretName: team-a-env, containers: [base, worker]}\n",
			pod:         taskPod(named("worker"), named(XComSidecar), withEnvFrom(named("base"), configMapRef)),
			want:        []Change{ch("0", "team-a-env"), ch("2", "team-a-env")},
			wantEnvFrom: [][]corev1.EnvFromSource{{injected("team-a-env")}, nil, {injected("team-a-env"), configMapRef}},
		},
		{
			name:        "an empty container list injects nothing",
			rules:       "envSecrets: {containers: []}\n",
			pod:         taskPod(named("base")),
			wantEnvFrom: [][]corev1.EnvFromSource{nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, EnvSecrets, tt.rules)
			pod := tt.pod.DeepCopy()
			assertChanges(t, rs.Mutate(pod, Facts{}), tt.want)
			if len(pod.Spec.Containers) != len(tt.wantEnvFrom) {
				t.Fatalf("got %d containers, want %d", len(pod.Spec.Containers), len(tt.wantEnvFrom))
			}
			for i, c := range pod.Spec.Containers {
				if len(c.EnvFrom) == 0 && len(tt.wantEnvFrom[i]) == 0 {
					continue
				}
				if !reflect.DeepEqual(c.EnvFrom, tt.wantEnvFrom[i]) {
					t.Errorf("containers[%d].envFrom = %+v, want %+v", i, c.EnvFrom, tt.wantEnvFrom[i])
				}
			}
			if !reflect.DeepEqual(pod.Spec.InitContainers, tt.pod.Spec.InitContainers) {
				t.Errorf("init containers changed: %+v", pod.Spec.InitContainers)
			}
			again := pod.DeepCopy()
			assertChanges(t, rs.Mutate(again, Facts{}), nil)
			if !reflect.DeepEqual(again, pod) {
				t.Errorf("second run changed the pod")
			}
		})
	}
}
