package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// PolicyKey is the ConfigMap key that holds the policy document.
const PolicyKey = "policy.yaml"

// ValidatePolicy serves /validate-policy: it refuses, at kubectl apply, a
// policy ConfigMap whose policy would not load, listing every error.
func (d *Deps) ValidatePolicy() admission.Handler {
	return d.instrumented(hookValidatePolicy, d.validatePolicy)
}

func (d *Deps) validatePolicy(_ context.Context, req admission.Request) (admission.Response, review.Decision) {
	if req.Kind.Group != "" || req.Kind.Kind != "ConfigMap" {
		d.Log.Info("not a ConfigMap; allowed unchanged", "kind", req.Kind.String(), "uid", req.UID)
		return admission.Allowed("kpoguard validates only policy ConfigMaps"), review.Allowed
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(req.Object.Raw, &cm); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the ConfigMap: %w", err)), review.Error
	}
	data, ok := cm.Data[PolicyKey]
	if !ok {
		return admission.Denied(fmt.Sprintf("kpoguard policy ConfigMap %q has no key %q", cm.Name, PolicyKey)), review.Denied
	}
	if _, err := policy.Load([]byte(data)); err != nil {
		return admission.Denied(fmt.Sprintf("kpoguard policy in ConfigMap %q key %q: %v", cm.Name, PolicyKey, err)), review.Denied
	}
	return admission.Allowed(""), review.Allowed
}
