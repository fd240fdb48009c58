package review

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kpoguard/kpoguard/policy"
)

// Annotations kpoguard writes on the pods it mutates.
const (
	// AnnotationMutations lists the applied changes, sorted. It is a record
	// for people; kpoguard never reads it to decide anything.
	AnnotationMutations = "kpoguard.io/mutations"
	// AnnotationPolicy is the content hash of the policy that reviewed the pod.
	AnnotationPolicy = "kpoguard.io/policy"
)

// Annotate records the applied changes, merged with any a previous
// invocation recorded (reinvocation calls kpoguard again on the same pod),
// and the policy's hash.
func Annotate(pod *corev1.Pod, applied []policy.Change, hash string) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationPolicy] = hash
	if len(applied) == 0 {
		return
	}
	var entries []string
	if prev := pod.Annotations[AnnotationMutations]; prev != "" {
		entries = strings.Split(prev, "; ")
	}
	for _, c := range applied {
		entries = append(entries, fmt.Sprintf("%s %s=%s", c.Rule, c.Path, c.Value))
	}
	slices.Sort(entries)
	pod.Annotations[AnnotationMutations] = strings.Join(slices.Compact(entries), "; ")
}
