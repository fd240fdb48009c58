package policy

import (
	"fmt"
	"math/big"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxDecimalDigits bounds the quantities the rules do arithmetic on:
// below 10^24 of anything (a yottabyte, a trillion trillion cores) is far past
// any node, and comparing a quantity such as 1e1000000000 takes long
// enough to stall admission.
const maxDecimalDigits = 24

// CheckQuantities refuses a pod whose resource quantities are too large to
// be real, before any rule does arithmetic on them.
func CheckQuantities(pod *corev1.Pod) error {
	var errs field.ErrorList
	checkList := func(list corev1.ResourceList, path *field.Path) {
		for name, q := range list {
			if !saneQuantity(q) {
				errs = append(errs, field.Invalid(path.Key(string(name)), q.String(), fmt.Sprintf("quantities of 1e%d or more are not accepted", maxDecimalDigits)))
			}
		}
	}
	for _, c := range containers(pod) {
		checkList(c.c.Resources.Requests, c.path.Child("resources", "requests"))
		checkList(c.c.Resources.Limits, c.path.Child("resources", "limits"))
	}
	if r := pod.Spec.Resources; r != nil {
		checkList(r.Requests, field.NewPath("spec", "resources", "requests"))
		checkList(r.Limits, field.NewPath("spec", "resources", "limits"))
	}
	for i, v := range pod.Spec.Volumes {
		if v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil && !saneQuantity(*v.EmptyDir.SizeLimit) {
			errs = append(errs, field.Invalid(field.NewPath("spec", "volumes").Index(i).Child("emptyDir", "sizeLimit"),
				v.EmptyDir.SizeLimit.String(), fmt.Sprintf("quantities of 1e%d or more are not accepted", maxDecimalDigits)))
		}
	}
	return errs.ToAggregate()
}

// saneQuantity reports whether q is below 10^maxDecimalDigits.
func saneQuantity(q resource.Quantity) bool {
	d := q.AsDec()
	unscaled := d.UnscaledBig()
	if unscaled.BitLen() > 256 { // past 1e77 whatever the scale: no need to print it
		return int64(d.Scale()) > 1000
	}
	digits := int64(len(new(big.Int).Abs(unscaled).String()))
	if unscaled.Sign() == 0 {
		return true
	}
	return digits-int64(d.Scale()) <= maxDecimalDigits
}
