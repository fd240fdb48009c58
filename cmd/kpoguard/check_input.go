package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// decodePod reads a pod as kubectl writes it, or as KPO's dry_run() prints
// it (the Python client's snake_case names), which is renamed first and
// then decoded strictly, so a name the renaming missed is an error rather
// than silently dropped. It returns the pod's JSON in the API's names.
func decodePod(data []byte) ([]byte, *corev1.Pod, error) {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a valid pod: %w", err)
	}
	pod := &corev1.Pod{}
	if !isPythonDict(doc) {
		if err := json.Unmarshal(data, pod); err != nil {
			return nil, nil, fmt.Errorf("not a valid pod: %w", err)
		}
		return data, pod, nil
	}
	raw, err := json.Marshal(fromPythonDict(doc))
	if err != nil {
		return nil, nil, err
	}
	strict, err := kjson.UnmarshalStrict(raw, pod)
	if err != nil {
		return nil, nil, fmt.Errorf("not a valid pod: %w", err)
	}
	if len(strict) > 0 {
		return nil, nil, fmt.Errorf("not a valid pod: %w", errors.Join(strict...))
	}
	return raw, pod, nil
}

// document is one YAML or JSON document, converted to JSON.
type document struct {
	source string
	json   []byte
}

func readDocuments(input string, stdin io.Reader) ([]document, error) {
	if input == "-" {
		return splitDocuments("<stdin>", stdin)
	}
	info, err := os.Stat(input)
	if err != nil {
		return nil, err
	}
	files := []string{input}
	if info.IsDir() {
		entries, err := os.ReadDir(input)
		if err != nil {
			return nil, err
		}
		files = nil
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				files = append(files, filepath.Join(input, e.Name()))
			}
		}
	}
	var docs []document
	for _, name := range files {
		fh, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		d, err := splitDocuments(name, fh)
		fh.Close()
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	return docs, nil
}

// splitDocuments reads multi-document YAML (or JSON); documents holding
// only comments are skipped.
func splitDocuments(name string, r io.Reader) ([]document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []document
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		j, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: not valid YAML: %w", name, i, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue
		}
		source := name
		if i > 1 {
			source = fmt.Sprintf("%s#%d", name, i)
		}
		docs = append(docs, document{source: source, json: j})
	}
}

func parseLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--namespace-labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}
