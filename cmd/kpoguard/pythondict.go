package main

import (
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// KPO's dry_run() prints yaml.dump(pod.to_dict()): the Kubernetes Python
// client's model attribute names, in snake_case (api_version,
// service_account_name). fromPythonDict renames them to the API's JSON
// names, walking the Pod type so that map keys that are data (labels,
// annotations, nodeSelector, resource names) keep their names.
func fromPythonDict(doc map[string]any) map[string]any {
	out, _ := renameFields(doc, reflect.TypeFor[corev1.Pod]()).(map[string]any)
	return out
}

// isPythonDict reports whether a document uses the Python client's names.
func isPythonDict(doc map[string]any) bool {
	_, ok := doc["api_version"]
	return ok
}

func renameFields(v any, t reflect.Type) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch val := v.(type) {
	case map[string]any:
		switch t.Kind() {
		case reflect.Map:
			for k, e := range val {
				val[k] = renameFields(e, t.Elem())
			}
			return val
		case reflect.Struct:
			fields := jsonFields(t)
			out := make(map[string]any, len(val))
			for k, e := range val {
				if f, ok := fields[fold(k)]; ok {
					out[f.name] = renameFields(e, f.typ)
				} else {
					out[k] = e // unknown: kept, so strict decoding can name it
				}
			}
			return out
		}
	case []any:
		if t.Kind() == reflect.Slice {
			for i, e := range val {
				val[i] = renameFields(e, t.Elem())
			}
		}
	}
	return v
}

type jsonField struct {
	name string
	typ  reflect.Type
}

// jsonFields maps a struct's JSON field names, folded, to the names and
// their types, inlined structs included.
func jsonFields(t reflect.Type) map[string]jsonField {
	fields := map[string]jsonField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case name == "" && f.Anonymous:
			for k, jf := range jsonFields(f.Type) {
				fields[k] = jf
			}
		case name != "":
			fields[fold(name)] = jsonField{name, f.Type}
		}
	}
	return fields
}

// fold makes host_ipc and hostIPC, api_version and apiVersion, compare equal.
func fold(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}
