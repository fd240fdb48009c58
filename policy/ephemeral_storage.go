package policy

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// EphemeralStorage is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const EphemeralStorage RuleID = "ephemeral-storage"

// EphemeralStorageSpec configures the ephemeral-storage rule.
type EphemeralStorageSpec struct {
	Mode Mode `json:"mode,omitempty"`
	// AllowEmptyDir admits emptyDir volumes in every queue.
	AllowEmptyDir *bool `json:"allowEmptyDir,omitempty"`
	// AllowedQueues admits emptyDir volumes for pods in these queues only.
	AllowedQueues    []string `json:"allowedQueues,omitempty"`
	DefaultSizeLimit Amount   `json:"defaultSizeLimit,omitempty"`
	MaxSizeLimit     Amount   `json:"maxSizeLimit,omitempty"`
}

// EphemeralStorageConfig is the compiled, typed ephemeralStorage section.
type EphemeralStorageConfig struct {
	Mode             Mode
	AllowEmptyDir    bool
	AllowedQueues    []string
	DefaultSizeLimit *resource.Quantity
	MaxSizeLimit     *resource.Quantity
}

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
// maximum. KPO's own xcom volume, mounted by its airflow-xcom-sidecar, is
// admitted everywhere, but where scratch volumes are not allowed it is
// capped at the default sizeLimit (it carries one JSON file), so naming a
// scratch volume "xcom" buys nothing.
//
// Reads spec.volumes[*].emptyDir and the sidecar's volume mounts.
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
		limit := cfg.MaxSizeLimit
		if !allowed {
			if !isXComVolume(pod, v.Name) {
				out = append(out, Violation{Subject: subject, Path: path.String(),
					Message: emptyDirDenied(cfg, in.queue.name),
					Fix:     "write scratch data to the container's filesystem or object storage" + queueHint(cfg.AllowedQueues)})
				continue
			}
			if limit == nil || (cfg.DefaultSizeLimit != nil && cfg.DefaultSizeLimit.Cmp(*limit) < 0) {
				limit = cfg.DefaultSizeLimit
			}
		}
		if limit == nil {
			continue
		}
		switch size := v.EmptyDir.SizeLimit; {
		case size == nil:
			out = append(out, Violation{Subject: subject, Path: path.Child("sizeLimit").String(),
				Message: fmt.Sprintf("no sizeLimit is set; the maximum is %s", limit),
				Fix:     fmt.Sprintf("set sizeLimit to at most %s", limit)})
		case size.Cmp(*limit) > 0:
			out = append(out, Violation{Subject: subject, Path: path.Child("sizeLimit").String(),
				Message: fmt.Sprintf("sizeLimit %s exceeds the maximum %s", size, limit),
				Fix:     fmt.Sprintf("set sizeLimit to at most %s", limit)})
		}
	}
	return out
}

// isXComVolume reports whether a volume is KPO's xcom volume: so named,
// and mounted by KPO's xcom sidecar.
func isXComVolume(pod *corev1.Pod, name string) bool {
	if name != XComVolume {
		return false
	}
	return slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool {
		return c.Name == XComSidecar && slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == XComVolume })
	})
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

func compileEphemeralStorage(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("ephemeralStorage")
	es := spec.EphemeralStorage
	rs.EphemeralStorage = EphemeralStorageConfig{
		Mode:             c.mode(es.Mode, p.Child("mode")),
		AllowEmptyDir:    *es.AllowEmptyDir,
		AllowedQueues:    es.AllowedQueues,
		DefaultSizeLimit: c.optionalQuantity(es.DefaultSizeLimit, p.Child("defaultSizeLimit")),
		MaxSizeLimit:     c.optionalQuantity(es.MaxSizeLimit, p.Child("maxSizeLimit")),
	}
	if d, m := rs.EphemeralStorage.DefaultSizeLimit, rs.EphemeralStorage.MaxSizeLimit; d != nil && m != nil && d.Cmp(*m) > 0 {
		c.add(field.Invalid(p.Child("defaultSizeLimit"), d.String(), fmt.Sprintf("must not exceed maxSizeLimit %s", m)))
	}
}
