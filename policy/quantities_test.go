package policy

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

func TestSaneQuantityBoundary(t *testing.T) {
	for s, want := range map[string]bool{
		"1e24": false, "9.99e23": true, "999999999999999999999999": true, "1000000000000000000000000": false,
		"1e999999999": false, "0": true, "2Gi": true, "1Ei": true, "5e23": true, "-1e30": false,
	} {
		if got := saneQuantity(resource.MustParse(s)); got != want {
			t.Errorf("saneQuantity(%s) = %v, want %v", s, got, want)
		}
	}
}

// ParseQuantity takes seconds on exponents like -999999999; the policy
// refuses them before parsing.
func TestPolicyRefusesHugeExponents(t *testing.T) {
	for _, q := range []string{"1e-999999999", "5E1000", "1e+12345"} {
		_, err := Load([]byte(doc("maxResources: {container: {cpu: \"" + q + "\"}}\n")))
		if err == nil || !strings.Contains(err.Error(), "exponents of four digits or more are not accepted") {
			t.Errorf("%s: %v", q, err)
		}
	}
	if _, err := Load([]byte(doc("maxResources: {container: {cpu: 1e3, memory: 1Ei}}\n"))); err != nil {
		t.Errorf("ordinary quantities refused: %v", err)
	}
}
