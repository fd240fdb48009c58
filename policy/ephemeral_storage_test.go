package policy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func emptyDir(name, size string) corev1.Volume {
	ed := &corev1.EmptyDirVolumeSource{}
	if size != "" {
		q := resource.MustParse(size)
		ed.SizeLimit = &q
	}
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: ed}}
}

func configMapVolume(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}}
}

func TestEphemeralStorageDefaults(t *testing.T) {
	ch := func(i, value string) Change {
		return Change{Rule: EphemeralStorage, Mode: Enforce, Path: "spec.volumes[" + i + "].emptyDir.sizeLimit", Value: value}
	}
	memory := emptyDir("shm", "")
	memory.EmptyDir.Medium = corev1.StorageMediumMemory

	tests := []struct {
		name      string
		rules     string
		volumes   []corev1.Volume
		want      []Change
		wantSizes []string // per volume; "" for none / not an emptyDir
	}{
		{name: "no volumes", rules: "ephemeralStorage: {}\n"},
		{
			name:      "the xcom volume gets the built-in default size",
			rules:     "ephemeralStorage: {}\n",
			volumes:   []corev1.Volume{emptyDir(XComVolume, "")},
			want:      []Change{ch("0", "1Gi")},
			wantSizes: []string{"1Gi"},
		},
		{
			name:      "a volume with a sizeLimit keeps it, even above the default",
			rules:     "ephemeralStorage: {allowEmptyDir: true}\n",
			volumes:   []corev1.Volume{emptyDir("scratch", "5Gi"), emptyDir("small", "10Mi")},
			wantSizes: []string{"5Gi", "10Mi"},
		},
		{
			name:      "a configured default, only on emptyDir volumes without one",
			rules:     "ephemeralStorage: {allowEmptyDir: true, defaultSizeLimit: 256Mi}\n",
			volumes:   []corev1.Volume{configMapVolume("cfg"), emptyDir("a", ""), emptyDir("b", "1Gi"), memory},
			want:      []Change{ch("1", "256Mi"), ch("3", "256Mi")},
			wantSizes: []string{"", "256Mi", "1Gi", "256Mi"},
		},
		{
			name:      "the default is added even to volumes the validator will refuse",
			rules:     "ephemeralStorage: {defaultSizeLimit: 0.5Gi}\n",
			volumes:   []corev1.Volume{emptyDir("scratch", "")},
			want:      []Change{ch("0", "512Mi")},
			wantSizes: []string{"512Mi"},
		},
		{
			name:      "a default given as a YAML number",
			rules:     "ephemeralStorage: {defaultSizeLimit: 1073741824}\n",
			volumes:   []corev1.Volume{emptyDir(XComVolume, "")},
			want:      []Change{ch("0", "1073741824")},
			wantSizes: []string{"1Gi"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, EphemeralStorage, tt.rules)
			pod := basePod()
			pod.Spec.Volumes = append([]corev1.Volume(nil), tt.volumes...)
			for i := range pod.Spec.Volumes {
				pod.Spec.Volumes[i] = *pod.Spec.Volumes[i].DeepCopy()
			}
			assertChanges(t, rs.Mutate(pod, Facts{}), tt.want)
			for i, v := range pod.Spec.Volumes {
				got := ""
				if v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil {
					got = v.EmptyDir.SizeLimit.String()
					if want := resource.MustParse(tt.wantSizes[i]); v.EmptyDir.SizeLimit.Cmp(want) != 0 {
						t.Errorf("volume %d sizeLimit = %s, want %s", i, got, tt.wantSizes[i])
					}
				} else if tt.wantSizes[i] != "" {
					t.Errorf("volume %d has no sizeLimit, want %s", i, tt.wantSizes[i])
				}
			}
			assertChanges(t, rs.Mutate(pod, Facts{}), nil)
		})
	}
}

func TestEphemeralStorage(t *testing.T) {
	const queues = "nodePool:\n" +
		"  defaultQueue: default\n" +
		"  queueLabel: kpoguard.io/queue\n" +
		"  queues:\n" +
		"    default: {nodeSelector: {pool: general}}\n" +
		"    big: {nodeSelector: {pool: big}}\n" +
		"    huge: {nodeSelector: {pool: huge}}\n"
	const queuesNoDefault = "nodePool:\n" +
		"  queues:\n" +
		"    big: {nodeSelector: {pool: big}}\n"

	const baseFix = "write scratch data to the container's filesystem or object storage"
	denied := func(i, name, msg, fix string) Violation {
		return Violation{Rule: EphemeralStorage, Mode: Enforce, Subject: `volume "` + name + `"`,
			Path: "spec.volumes[" + i + "].emptyDir", Message: msg, Fix: fix}
	}
	inNamespace := "emptyDir volumes are not allowed for task pods in this namespace"
	noSize := func(i, name, max string) Violation {
		return Violation{Rule: EphemeralStorage, Mode: Enforce, Subject: `volume "` + name + `"`,
			Path: "spec.volumes[" + i + "].emptyDir.sizeLimit", Message: "no sizeLimit is set; the maximum is " + max,
			Fix: "set sizeLimit to at most " + max}
	}
	tooBig := func(i, name, size, max string) Violation {
		return Violation{Rule: EphemeralStorage, Mode: Enforce, Subject: `volume "` + name + `"`,
			Path: "spec.volumes[" + i + "].emptyDir.sizeLimit", Message: "sizeLimit " + size + " exceeds the maximum " + max,
			Fix: "set sizeLimit to at most " + max}
	}

	tests := []struct {
		name    string
		rules   string
		volumes []corev1.Volume
		labels  map[string]string
		sidecar bool // KPO's xcom sidecar mounts the xcom volume
		facts   Facts
		want    []Violation
	}{
		{
			name:    "emptyDir is refused by default",
			rules:   "ephemeralStorage: {}\n",
			volumes: []corev1.Volume{configMapVolume("cfg"), emptyDir("scratch", "1Gi")},
			want:    []Violation{denied("1", "scratch", inNamespace, baseFix)},
		},
		{
			name:    "KPO's xcom volume, mounted by its sidecar, is admitted",
			rules:   "ephemeralStorage: {}\n",
			sidecar: true,
			volumes: []corev1.Volume{emptyDir(XComVolume, "1Gi"), emptyDir("scratch", "")},
			want:    []Violation{denied("1", "scratch", inNamespace, baseFix)},
		},
		{
			name:    "a volume named xcom without KPO's sidecar is a scratch volume",
			rules:   "ephemeralStorage: {}\n",
			volumes: []corev1.Volume{emptyDir(XComVolume, "500Gi")},
			want:    []Violation{denied("0", XComVolume, inNamespace, baseFix)},
		},
		{
			name:    "where scratch volumes are refused, xcom is capped at the default size",
			rules:   "ephemeralStorage: {}\n",
			sidecar: true,
			volumes: []corev1.Volume{emptyDir(XComVolume, "500Gi")},
			want:    []Violation{tooBig("0", XComVolume, "500Gi", "1Gi")},
		},
		{
			name:    "the xcom volume is size-capped like any other",
			rules:   "ephemeralStorage: {maxSizeLimit: 2Gi, allowEmptyDir: true}\n",
			sidecar: true,
			volumes: []corev1.Volume{emptyDir(XComVolume, "3Gi")},
			want:    []Violation{tooBig("0", XComVolume, "3Gi", "2Gi")},
		},
		{
			name:    "an xcom volume without a size is refused when a maximum is set",
			rules:   "ephemeralStorage: {maxSizeLimit: 2Gi}\n",
			sidecar: true,
			volumes: []corev1.Volume{emptyDir(XComVolume, "")},
			want:    []Violation{noSize("0", XComVolume, "1Gi")},
		},
		{
			name:    "at the maximum is fine",
			rules:   "ephemeralStorage: {maxSizeLimit: 2Gi, allowEmptyDir: true}\n",
			sidecar: true,
			volumes: []corev1.Volume{emptyDir(XComVolume, "2048Mi")},
		},
		{
			name:    "allowEmptyDir admits scratch volumes without a maximum",
			rules:   "ephemeralStorage: {allowEmptyDir: true}\n",
			volumes: []corev1.Volume{emptyDir("scratch", ""), emptyDir("big", "100Gi")},
		},
		{
			name:    "allowEmptyDir with a maximum",
			rules:   "ephemeralStorage: {allowEmptyDir: true, maxSizeLimit: 10Gi}\n",
			volumes: []corev1.Volume{emptyDir("a", "10Gi"), emptyDir("b", "11Gi"), emptyDir("c", "")},
			want:    []Violation{tooBig("1", "b", "11Gi", "10Gi"), noSize("2", "c", "10Gi")},
		},
		{
			name:    "a refused volume is not also size-checked",
			rules:   "ephemeralStorage: {maxSizeLimit: 2Gi}\n",
			volumes: []corev1.Volume{emptyDir("scratch", "50Gi")},
			want:    []Violation{denied("0", "scratch", inNamespace, baseFix)},
		},
		{
			name:    "allowedQueues refuses pods in the default queue",
			rules:   "ephemeralStorage: {allowedQueues: [big, huge]}\n" + queues,
			volumes: []corev1.Volume{emptyDir("scratch", "1Gi")},
			want: []Violation{denied("0", "scratch", `emptyDir volumes are not allowed for task pods in queue "default"`,
				baseFix+", or run the task in a queue that allows scratch volumes ([big huge])")},
		},
		{
			name:    "allowedQueues admits a pod whose queue a trusted fact gives",
			rules:   "ephemeralStorage: {allowedQueues: [big]}\n" + queues,
			volumes: []corev1.Volume{emptyDir("scratch", "1Gi")},
			facts:   fromWorker("big"),
		},
		{
			name:    "allowedQueues admits a pod whose queue label names an allowed queue",
			rules:   "ephemeralStorage: {allowedQueues: [big]}\n" + queues,
			volumes: []corev1.Volume{emptyDir("scratch", "1Gi")},
			labels:  map[string]string{"kpoguard.io/queue": "big"},
		},
		{
			name:    "the trusted fact wins over the queue label",
			rules:   "ephemeralStorage: {allowedQueues: [big]}\n" + queues,
			volumes: []corev1.Volume{emptyDir("scratch", "1Gi")},
			labels:  map[string]string{"kpoguard.io/queue": "big"},
			facts:   fromWorker("huge"),
			want: []Violation{denied("0", "scratch", `emptyDir volumes are not allowed for task pods in queue "huge"`,
				baseFix+", or run the task in a queue that allows scratch volumes ([big])")},
		},
		{
			name:    "a queue label naming no queue falls back to the default queue",
			rules:   "ephemeralStorage: {allowedQueues: [big]}\n" + queues,
			volumes: []corev1.Volume{emptyDir("scratch", "1Gi")},
			labels:  map[string]string{"kpoguard.io/queue": "nope"},
			want: []Violation{denied("0", "scratch", `emptyDir volumes are not allowed for task pods in queue "default"`,
				baseFix+", or run the task in a queue that allows scratch volumes ([big])")},
		},
		{
			name:    "allowedQueues with a pod in no queue",
			rules:   "ephemeralStorage: {allowedQueues: [big]}\n" + queuesNoDefault,
			volumes: []corev1.Volume{emptyDir("scratch", "1Gi")},
			want: []Violation{denied("0", "scratch", inNamespace,
				baseFix+", or run the task in a queue that allows scratch volumes ([big])")},
		},
		{
			name:    "allowed queues are still size-capped",
			rules:   "ephemeralStorage: {allowedQueues: [big], maxSizeLimit: 4Gi}\n" + queues,
			volumes: []corev1.Volume{emptyDir(XComVolume, "1Gi"), emptyDir("scratch", "8Gi")},
			facts:   fromWorker("big"),
			want:    []Violation{tooBig("1", "scratch", "8Gi", "4Gi")},
		},
		{
			name:    "non-emptyDir volumes are not this rule's business",
			rules:   "ephemeralStorage: {maxSizeLimit: 1Gi}\n",
			volumes: []corev1.Volume{configMapVolume("cfg")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, EphemeralStorage, tt.rules)
			pod := basePod()
			for k, v := range tt.labels {
				pod.Labels[k] = v
			}
			pod.Spec.Volumes = tt.volumes
			if tt.sidecar {
				pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: XComSidecar,
					VolumeMounts: []corev1.VolumeMount{{Name: XComVolume, MountPath: "/airflow/xcom"}}})
			}
			assertViolations(t, rs.Validate(pod, tt.facts), tt.want)
		})
	}
}

// After the mutating pass, the fixture's xcom volume passes the cap (the
// default size, as scratch volumes are not allowed) it failed before.
func TestEphemeralStorageMutateThenValidate(t *testing.T) {
	rs := ruleOnly(t, EphemeralStorage, "ephemeralStorage: {maxSizeLimit: 2Gi}\n")
	pod := loadFixture(t, "02-kpo-xcom-sidecar-mapped-requests-lt-limits.yaml")
	assertViolations(t, rs.Validate(pod, Facts{}), []Violation{{Rule: EphemeralStorage, Mode: Enforce,
		Subject: `volume "xcom"`, Path: "spec.volumes[0].emptyDir.sizeLimit",
		Message: "no sizeLimit is set; the maximum is 1Gi", Fix: "set sizeLimit to at most 1Gi"}})
	assertChanges(t, rs.Mutate(pod, Facts{}), []Change{{Rule: EphemeralStorage, Mode: Enforce,
		Path: "spec.volumes[0].emptyDir.sizeLimit", Value: "1Gi"}})
	assertViolations(t, rs.Validate(pod, Facts{}), nil)
}
