package policy

import (
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
