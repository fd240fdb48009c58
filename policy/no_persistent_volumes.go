package policy

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// NoPersistentVolumes is the rule's ID in the policy's docs, messages, metric labels
// and the audit annotation.
const NoPersistentVolumes RuleID = "no-persistent-volumes"

// NoPersistentVolumesSpec configures the no-persistent-volumes rule.
type NoPersistentVolumesSpec struct {
	Mode          Mode  `json:"mode,omitempty"`
	AllowHostPath *bool `json:"allowHostPath,omitempty"`
	// AllowVolumeTypes admits more volume types by their field name, such
	// as csi for a secrets-store driver.
	AllowVolumeTypes []string `json:"allowVolumeTypes,omitempty"`
}

// NoPersistentVolumesConfig is the compiled, typed noPersistentVolumes section.
type NoPersistentVolumesConfig struct {
	Mode             Mode
	AllowHostPath    bool
	AllowVolumeTypes []string
}

// safeVolumeTypes live and die with the pod and reach nothing outside it.
var safeVolumeTypes = []string{"emptyDir", "configMap", "secret", "downwardAPI", "projected", "image"}

// volumeTypes are every volume type of our k8s.io/api, by JSON name.
var volumeTypes = func() []string {
	t := reflect.TypeFor[corev1.VolumeSource]()
	names := make([]string, t.NumField())
	for i := range names {
		names[i], _, _ = strings.Cut(t.Field(i).Tag.Get("json"), ",")
	}
	return names
}()

// volumeType names the source a volume uses, such as "nfs".
func volumeType(v *corev1.Volume) string {
	s := reflect.ValueOf(v.VolumeSource)
	for i := range s.NumField() {
		if !s.Field(i).IsNil() {
			return volumeTypes[i]
		}
	}
	return ""
}

// noPersistentVolumes admits only volumes that live and die with the pod:
// emptyDir, configMap, secret, downwardAPI, projected and image, plus the
// types the policy adds (allowVolumeTypes, allowHostPath). Everything else
// is refused: persistentVolumeClaim, generic ephemeral volumes (each
// creates a PVC), hostPath, and storage mounted straight from the spec
// (nfs, csi, awsElasticBlockStore, ...).
//
// Reads spec.volumes.
func noPersistentVolumes(pod *corev1.Pod, in *input) []Violation {
	cfg := in.rules.NoPersistentVolumes
	var out []Violation
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		kind := volumeType(v)
		if slices.Contains(safeVolumeTypes, kind) || slices.Contains(cfg.AllowVolumeTypes, kind) || (kind == "hostPath" && cfg.AllowHostPath) {
			continue
		}
		path := field.NewPath("spec", "volumes").Index(i)
		if kind != "" {
			path = path.Child(kind)
		}
		subject := fmt.Sprintf("volume %q", v.Name)
		switch kind {
		case "persistentVolumeClaim":
			out = append(out, Violation{Subject: subject, Path: path.String(),
				Message: "PersistentVolumes are not supported for task pods",
				Fix:     "use an emptyDir scratch volume where your platform allows it, and keep data in object storage"})
		case "ephemeral":
			out = append(out, Violation{Subject: subject, Path: path.String(),
				Message: "generic ephemeral volumes create PersistentVolumeClaims, which are not supported for task pods",
				Fix:     "use an emptyDir scratch volume where your platform allows it"})
		case "hostPath":
			out = append(out, Violation{Subject: subject, Path: path.String(),
				Message: "hostPath volumes expose the node to task pods and are not allowed",
				Fix:     "remove the volume; read inputs from object storage or a ConfigMap instead"})
		default:
			out = append(out, Violation{Subject: subject, Path: path.String(),
				Message: fmt.Sprintf("%s volumes mount storage from outside the pod and are not allowed for task pods", orUnknown(kind)),
				Fix:     "use an emptyDir scratch volume where your platform allows it, and keep data in object storage"})
		}
	}
	return out
}

func orUnknown(kind string) string {
	if kind == "" {
		return "untyped"
	}
	return kind
}

func compileNoPersistentVolumes(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("noPersistentVolumes")
	rs.NoPersistentVolumes = NoPersistentVolumesConfig{
		Mode:             c.mode(spec.NoPersistentVolumes.Mode, p.Child("mode")),
		AllowHostPath:    *spec.NoPersistentVolumes.AllowHostPath,
		AllowVolumeTypes: spec.NoPersistentVolumes.AllowVolumeTypes,
	}
	for i, kind := range spec.NoPersistentVolumes.AllowVolumeTypes {
		if !slices.Contains(volumeTypes, kind) {
			c.add(field.NotSupported(p.Child("allowVolumeTypes").Index(i), kind, volumeTypes))
		}
	}
}
