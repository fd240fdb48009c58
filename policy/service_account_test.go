package policy

import (
	"testing"
)

func TestServiceAccount(t *testing.T) {
	v := func(name, path, allowed string) Violation {
		return Violation{Rule: ServiceAccount, Mode: Enforce, Subject: `service account "` + name + `"`, Path: path,
			Message: "cross-account service accounts are not supported for task pods",
			Fix:     "remove service_account_name or use one of: " + allowed}
	}
	const name, deprecated = "spec.serviceAccountName", "spec.serviceAccount"

	tests := []struct {
		name      string
		rules     string
		sa, depSA string
		want      []Violation
	}{
		{name: `"" means default, allowed by default`, rules: "serviceAccount: {}\n"},
		{name: "default explicitly", rules: "serviceAccount: {}\n", sa: "default"},
		{name: "another account is refused", rules: "serviceAccount: {}\n", sa: "airflow-admin",
			want: []Violation{v("airflow-admin", name, "default")}},
		{name: "an allowed account", rules: "serviceAccount: {allowed: [default, airflow-task]}\n", sa: "airflow-task"},
		{name: "the fix lists every allowed account", rules: "serviceAccount: {allowed: [default, airflow-task]}\n", sa: "root",
			want: []Violation{v("root", name, "default, airflow-task")}},
		{name: `"" is refused when default is not allowed`, rules: "serviceAccount: {allowed: [airflow-task]}\n",
			want: []Violation{v("default", name, "airflow-task")}},
		{name: "the deprecated field alone is checked", rules: "serviceAccount: {}\n", depSA: "airflow-admin",
			want: []Violation{v("airflow-admin", deprecated, "default")}},
		{name: "the deprecated field equal to the name is checked once", rules: "serviceAccount: {}\n", sa: "admin", depSA: "admin",
			want: []Violation{v("admin", name, "default")}},
		{name: "both fields, both refused", rules: "serviceAccount: {}\n", sa: "a", depSA: "b",
			want: []Violation{v("a", name, "default"), v("b", deprecated, "default")}},
		{name: "an allowed name with a refused deprecated field", rules: "serviceAccount: {allowed: [task]}\n", sa: "task", depSA: "admin",
			want: []Violation{v("admin", deprecated, "task")}},
		{name: "deprecated default with an allowed name", rules: "serviceAccount: {allowed: [task]}\n", sa: "task", depSA: "default",
			want: []Violation{v("default", deprecated, "task")}},
		{name: "warn mode", rules: "serviceAccount: {mode: warn}\n", sa: "admin",
			want: []Violation{func() Violation { x := v("admin", name, "default"); x.Mode = Warn; return x }()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := ruleOnly(t, ServiceAccount, tt.rules)
			pod := basePod()
			pod.Spec.ServiceAccountName = tt.sa
			pod.Spec.DeprecatedServiceAccount = tt.depSA
			assertViolations(t, rs.Validate(pod, Facts{}), tt.want)
		})
	}
}
