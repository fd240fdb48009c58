package policy

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ephemeralStorageDefaults gives every emptyDir volume without a sizeLimit
// the policy's default, so no scratch volume can fill the node's disk.
//
// Reads and writes spec.volumes[*].emptyDir.sizeLimit.
func ephemeralStorageDefaults(pod *corev1.Pod, in *input) []Change {
	def := in.rules.EphemeralStorage.DefaultSizeLimit
	if def == nil {
		return nil
	}
	var changes []Change
	for i := range pod.Spec.Volumes {
		ed := pod.Spec.Volumes[i].EmptyDir
		if ed == nil || ed.SizeLimit != nil {
			continue
		}
		limit := def.DeepCopy()
		ed.SizeLimit = &limit
		changes = append(changes, Change{
			Path:  field.NewPath("spec", "volumes").Index(i).Child("emptyDir", "sizeLimit").String(),
			Value: limit.String(),
		})
	}
	return changes
}

// ephemeralStorage admits emptyDir volumes only where the policy allows them
// (everywhere, or for pods in the allowed queues) and no larger than the
// maximum. KPO's own xcom volume is always admitted, but its size is capped
// like any other, so naming a volume "xcom" buys nothing.
//
// Reads spec.volumes[*].emptyDir.
func ephemeralStorage(pod *corev1.Pod, in *input) []Violation {
	cfg := in.rules.EphemeralStorage
	allowed := cfg.AllowEmptyDir || slices.Contains(cfg.AllowedQueues, in.queue.name)
	var out []Violation
	for i, v := range pod.Spec.Volumes {
		if v.EmptyDir == nil {
			continue
		}
		path := field.NewPath("spec", "volumes").Index(i).Child("emptyDir")
		subject := fmt.Sprintf("volume %q", v.Name)
		if !allowed && v.Name != XComVolume {
			out = append(out, Violation{Subject: subject, Path: path.String(),
				Message: emptyDirDenied(cfg, in.queue.name),
				Fix:     "write scratch data to the container's filesystem or object storage" + queueHint(cfg.AllowedQueues)})
			continue
		}
		if cfg.MaxSizeLimit == nil {
			continue
		}
		switch size := v.EmptyDir.SizeLimit; {
		case size == nil:
			out = append(out, Violation{Subject: subject, Path: path.Child("sizeLimit").String(),
				Message: fmt.Sprintf("no sizeLimit is set; the maximum is %s", cfg.MaxSizeLimit),
				Fix:     fmt.Sprintf("set sizeLimit to at most %s", cfg.MaxSizeLimit)})
		case size.Cmp(*cfg.MaxSizeLimit) > 0:
			out = append(out, Violation{Subject: subject, Path: path.Child("sizeLimit").String(),
				Message: fmt.Sprintf("sizeLimit %s exceeds the maximum %s", size, cfg.MaxSizeLimit),
				Fix:     fmt.Sprintf("set sizeLimit to at most %s", cfg.MaxSizeLimit)})
		}
	}
	return out
}

func emptyDirDenied(cfg EphemeralStorageConfig, queue string) string {
	if len(cfg.AllowedQueues) == 0 || queue == "" {
		return "emptyDir volumes are not allowed for task pods in this namespace"
	}
	return fmt.Sprintf("emptyDir volumes are not allowed for task pods in queue %q", queue)
}

func queueHint(queues []string) string {
	if len(queues) == 0 {
		return ""
	}
	return fmt.Sprintf(", or run the task in a queue that allows scratch volumes (%v)", queues)
}
