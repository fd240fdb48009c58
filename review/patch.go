package review

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// PodPatch returns the JSON patch that turns the raw pod the API server
// sent into mutated. Re-encoding a typed pod changes things kpoguard did
// not mean to change: it drops fields our k8s.io/api does not know and
// empty values it omits, adds an empty status, and rewrites quantities
// (0.5 becomes "500m", null becomes "0"). Every operation that re-encoding
// the unmutated pod alone would produce is dropped, so the patch carries
// only the mutation. Operations are sorted for a deterministic patch.
func PodPatch(raw []byte, original, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
	ops, err := diff(raw, mutated)
	if err != nil {
		return nil, err
	}
	reencoding, err := diff(raw, original)
	if err != nil {
		return nil, err
	}
	artifacts := make(map[string]jsonpatch.Operation, len(reencoding))
	for _, op := range reencoding {
		artifacts[op.Operation+op.Path] = op
	}
	ops = slices.DeleteFunc(ops, func(op jsonpatch.Operation) bool {
		a, ok := artifacts[op.Operation+op.Path]
		return ok && reflect.DeepEqual(a.Value, op.Value)
	})
	slices.SortStableFunc(ops, compareOps)
	return ops, nil
}

func diff(raw []byte, pod *corev1.Pod) ([]jsonpatch.Operation, error) {
	encoded, err := json.Marshal(pod)
	if err != nil {
		return nil, fmt.Errorf("encoding the pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(raw, encoded)
	if err != nil {
		return nil, fmt.Errorf("diffing the pod: %w", err)
	}
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
