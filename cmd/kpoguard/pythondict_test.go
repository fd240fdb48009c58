package main

import (
	"encoding/json"
	"testing"
)

func TestFromPythonDict(t *testing.T) {
	in := `{"api_version":"v1","kind":"Pod","metadata":{"labels":{"dag_id":"etl","try_number":"1"},"annotations":{"a_b":"c"}},
"spec":{"host_ipc":false,"node_selector":{"node_pool":"x"},"service_account_name":"default",
"containers":[{"name":"base","image_pull_policy":"Always","resources":{"limits":{"nvidia.com/gpu":"1","ephemeral_storage_x":"1"}},
"env":[{"name":"A_B","value_from":{"secret_key_ref":{"name":"s","key":"k"}}}]}],
"security_context":{"run_as_non_root":true,"fs_group":1000}}}`
	want := `{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"a_b":"c"},"labels":{"dag_id":"etl","try_number":"1"}},` +
		`"spec":{"containers":[{"env":[{"name":"A_B","valueFrom":{"secretKeyRef":{"key":"k","name":"s"}}}],"imagePullPolicy":"Always","name":"base",` +
		`"resources":{"limits":{"ephemeral_storage_x":"1","nvidia.com/gpu":"1"}}}],"hostIPC":false,"nodeSelector":{"node_pool":"x"},` +
		`"securityContext":{"fsGroup":1000,"runAsNonRoot":true},"serviceAccountName":"default"}}`
	var doc map[string]any
	if err := json.Unmarshal([]byte(in), &doc); err != nil {
		t.Fatal(err)
	}
	if !isPythonDict(doc) {
		t.Fatal("not recognised as the Python client's names")
	}
	out, err := json.Marshal(fromPythonDict(doc))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}
