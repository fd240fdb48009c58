package policy

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestNoPersistentVolumes(t *testing.T) {
	pvc := func(name string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}
	}
	ephemeral := func(name string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}}
	}
	hostPath := func(name string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run"}}}
	}
	others := []corev1.Volume{
		{Name: "xcom", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
		{Name: "proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
		{Name: "down", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}},
	}
	pvcV := func(i, name string) Violation {
		return Violation{Rule: NoPersistentVolumes, Mode: Enforce, Subject: `volume "` + name + `"`,
			Path:    "spec.volumes[" + i + "].persistentVolumeClaim",
			Message: "PersistentVolumes are not supported for task pods",
			Fix:     "use an emptyDir scratch volume where your platform allows it, and keep data in object storage"}
	}
	ephV := func(i, name string) Violation {
		return Violation{Rule: NoPersistentVolumes, Mode: Enforce, Subject: `volume "` + name + `"`,
			Path:    "spec.volumes[" + i + "].ephemeral",
			Message: "generic ephemeral volumes create PersistentVolumeClaims, which are not supported for task pods",
			Fix:     "use an emptyDir scratch volume where your platform allows it"}
	}
	hostV := func(i, name string) Violation {
		return Violation{Rule: NoPersistentVolumes, Mode: Enforce, Subject: `volume "` + name + `"`,
			Path:    "spec.volumes[" + i + "].hostPath",
			Message: "hostPath volumes expose the node to task pods and are not allowed",
			Fix:     "remove the volume; read inputs from object storage or a ConfigMap instead"}
	}

	tests := []struct {
		name    string
		rules   string
		volumes []corev1.Volume
		want    []Violation
	}{
		{name: "no volumes", rules: "noPersistentVolumes: {}\n"},
		{name: "non-persistent volumes are fine", rules: "noPersistentVolumes: {}\n", volumes: others},
		{name: "a persistentVolumeClaim", rules: "noPersistentVolumes: {}\n",
			volumes: []corev1.Volume{pvc("data")}, want: []Violation{pvcV("0", "data")}},
		{name: "a generic ephemeral volume", rules: "noPersistentVolumes: {}\n",
			volumes: []corev1.Volume{ephemeral("scratch")}, want: []Violation{ephV("0", "scratch")}},
		{name: "hostPath is refused by default", rules: "noPersistentVolumes: {}\n",
			volumes: []corev1.Volume{hostPath("docker")}, want: []Violation{hostV("0", "docker")}},
		{name: "hostPath is admitted when allowed", rules: "noPersistentVolumes: {allowHostPath: true}\n",
			volumes: []corev1.Volume{hostPath("docker")}},
		{name: "allowHostPath does not admit claims", rules: "noPersistentVolumes: {allowHostPath: true}\n",
			volumes: []corev1.Volume{hostPath("docker"), pvc("data")}, want: []Violation{pvcV("1", "data")}},
		{name: "every violation, in volume order", rules: "noPersistentVolumes: {}\n",
			volumes: append(append([]corev1.Volume{}, others...), hostPath("h"), pvc("p1"), ephemeral("e"), pvc("p2")),
			want:    []Violation{hostV("5", "h"), pvcV("6", "p1"), ephV("7", "e"), pvcV("8", "p2")}},
		{name: "audit mode marks violations", rules: "noPersistentVolumes: {mode: audit}\n",
			volumes: []corev1.Volume{pvc("data")},
			want:    []Violation{func() Violation { v := pvcV("0", "data"); v.Mode = Audit; return v }()}},
		{name: "off", rules: "noPersistentVolumes: {mode: \"off\"}\n", volumes: []corev1.Volume{pvc("data")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, NoPersistentVolumes, tt.rules)
			pod := basePod()
			pod.Spec.Volumes = tt.volumes
			assertViolations(t, rs.Validate(pod, Facts{}), tt.want)
			assertChanges(t, rs.Mutate(pod, Facts{}), nil)
		})
	}
}

// Only volumes that live and die with the pod pass; storage mounted from
// the spec is refused unless the policy adds its type.
func TestNoPersistentVolumesAllowlist(t *testing.T) {
	vol := func(name string, src corev1.VolumeSource) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: src}
	}
	pod := taskPod(ctr("base", corev1.ResourceRequirements{}))
	pod.Spec.Volumes = []corev1.Volume{
		vol("scratch", corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}),
		vol("cfg", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}),
		vol("creds", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{}}),
		vol("info", corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}),
		vol("token", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}),
		vol("finance", corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "10.0.0.1", Path: "/exports"}}),
		vol("disk", corev1.VolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-1"}}),
		vol("vault", corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "secrets-store.csi.k8s.io"}}),
		vol("bare", corev1.VolumeSource{}),
	}
	tests := []struct {
		policy string
		want   []string
	}{
		{"noPersistentVolumes: {}\n", []string{
			`volume "finance" (spec.volumes[5].nfs): nfs volumes mount storage from outside the pod and are not allowed for task pods`,
			`volume "disk" (spec.volumes[6].awsElasticBlockStore): awsElasticBlockStore volumes mount storage from outside the pod and are not allowed for task pods`,
			`volume "vault" (spec.volumes[7].csi): csi volumes mount storage from outside the pod and are not allowed for task pods`,
			`volume "bare" (spec.volumes[8]): untyped volumes mount storage from outside the pod and are not allowed for task pods`,
		}},
		{"noPersistentVolumes: {allowVolumeTypes: [csi, nfs]}\n", []string{
			`volume "disk" (spec.volumes[6].awsElasticBlockStore): awsElasticBlockStore volumes mount storage from outside the pod and are not allowed for task pods`,
			`volume "bare" (spec.volumes[8]): untyped volumes mount storage from outside the pod and are not allowed for task pods`,
		}},
	}
	for _, tt := range tests {
		rs := rulesFor(t, tt.policy)
		var got []string
		for _, v := range only(rs, NoPersistentVolumes).Validate(pod, Facts{}) {
			got = append(got, fmt.Sprintf("%s (%s): %s", v.Subject, v.Path, v.Message))
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%s: violations:\n%s\nwant:\n%s", tt.policy, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
	}
	if _, err := Load([]byte(doc("noPersistentVolumes: {allowVolumeTypes: [nsf]}\n"))); err == nil || !strings.Contains(err.Error(), `allowVolumeTypes[0]: Unsupported value: "nsf"`) {
		t.Errorf("misspelt volume type: %v", err)
	}
}
