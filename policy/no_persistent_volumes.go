package policy

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// noPersistentVolumes refuses volumes that outlive the pod or reach into the
// node: persistentVolumeClaim, generic ephemeral volumes (each creates a
// PVC) and, unless the policy allows it, hostPath.
//
// Reads spec.volumes.
func noPersistentVolumes(pod *corev1.Pod, in *input) []Violation {
	var out []Violation
	for i, v := range pod.Spec.Volumes {
		path := field.NewPath("spec", "volumes").Index(i)
		subject := fmt.Sprintf("volume %q", v.Name)
		switch {
		case v.PersistentVolumeClaim != nil:
			out = append(out, Violation{Subject: subject, Path: path.Child("persistentVolumeClaim").String(),
				Message: "PersistentVolumes are not supported for task pods",
				Fix:     "use an emptyDir scratch volume where your platform allows it, and keep data in object storage"})
		case v.Ephemeral != nil:
			out = append(out, Violation{Subject: subject, Path: path.Child("ephemeral").String(),
				Message: "generic ephemeral volumes create PersistentVolumeClaims, which are not supported for task pods",
				Fix:     "use an emptyDir scratch volume where your platform allows it"})
		case v.HostPath != nil && !in.rules.NoPersistentVolumes.AllowHostPath:
			out = append(out, Violation{Subject: subject, Path: path.Child("hostPath").String(),
				Message: "hostPath volumes expose the node to task pods and are not allowed",
				Fix:     "remove the volume; read inputs from object storage or a ConfigMap instead"})
		}
	}
	return out
}
