package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// PodPatch returns the JSON patch that turns the raw pod the API server
// sent into mutated. Re-encoding a typed pod drops fields our k8s.io/api
// does not know and empty values it omits; the removals that re-encoding
// alone would cause are dropped, so kpoguard never deletes what it did not
// mean to. Operations are sorted for a deterministic patch.
func PodPatch(raw []byte, original, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
	mutatedJSON, err := json.Marshal(mutated)
	if err != nil {
		return nil, fmt.Errorf("encoding the mutated pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(raw, mutatedJSON)
	if err != nil {
		return nil, fmt.Errorf("diffing the pod: %w", err)
	}
	if slices.ContainsFunc(ops, isRemove) {
		originalJSON, err := json.Marshal(original)
		if err != nil {
			return nil, fmt.Errorf("encoding the pod: %w", err)
		}
		reencoding, err := jsonpatch.CreatePatch(raw, originalJSON)
		if err != nil {
			return nil, fmt.Errorf("diffing the pod: %w", err)
		}
		byScheme := map[string]bool{}
		for _, op := range reencoding {
			if isRemove(op) {
				byScheme[op.Path] = true
			}
		}
		ops = slices.DeleteFunc(ops, func(op jsonpatch.Operation) bool { return isRemove(op) && byScheme[op.Path] })
	}
	slices.SortStableFunc(ops, compareOps)
	return ops, nil
}

func isRemove(op jsonpatch.Operation) bool { return op.Operation == "remove" }

// compareOps orders operations by path, array indexes as numbers. Within
// one array, adds must run in ascending and removes in descending index
// order for each to find its place, which is the order the diff made them.
func compareOps(a, b jsonpatch.Operation) int {
	as, bs := strings.Split(a.Path, "/"), strings.Split(b.Path, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] == bs[i] {
			continue
		}
		ai, aErr := strconv.Atoi(as[i])
		bi, bErr := strconv.Atoi(bs[i])
		if aErr != nil || bErr != nil {
			return strings.Compare(as[i], bs[i])
		}
		if isRemove(a) && isRemove(b) {
			return bi - ai
		}
		return ai - bi
	}
	return len(as) - len(bs)
}
