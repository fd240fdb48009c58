package sandbox

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/internal/registrytest"
)

// The sandbox has no internet, like an air-gapped cluster: its registry
// stands in as the mirror of Docker Hub, ghcr.io and registry.example.com,
// holding the images the tests and the guide use.
var (
	mirroredRegistries = []map[string]any{
		{"name": "dockerhub", "host": "docker.io"},
		{"name": "ghcr", "host": "ghcr.io"},
		{"name": "example", "host": "registry.example.com"},
	}
	mirroredImages = map[string]string{
		"library/ubuntu:22.04":     registrytest.MultiArch,
		"library/alpine:latest":    registrytest.MultiArch,
		"library/alpine:3.20":      registrytest.MultiArch,
		"library/busybox:1.36":     registrytest.ManifestList,
		"library/python:3.12-slim": registrytest.AMD64,
		"library/fluent-bit:3":     registrytest.MultiArch,
		"data/joiner:1.4.2":        registrytest.AMD64,
		"etl/loader:2.1":           registrytest.AMD64,
	}
)

// startRegistry serves the sandbox's registry and writes its CA where
// kpoguard's --registry-ca-file reads it.
func startRegistry(workDir string) (*registrytest.Server, string, error) {
	reg, err := registrytest.Start()
	if err != nil {
		return nil, "", err
	}
	for dst, src := range mirroredImages {
		if err := reg.Copy(src, dst); err != nil {
			reg.Close()
			return nil, "", fmt.Errorf("seeding %s: %w", dst, err)
		}
	}
	reg.Reset()
	caFile := filepath.Join(workDir, "registry-ca.pem")
	if err := os.WriteFile(caFile, reg.CertPEM, 0o600); err != nil {
		reg.Close()
		return nil, "", err
	}
	return reg, caFile, nil
}

// withMirrors returns the policy with the sandbox's registry as the mirror
// of the registries it stands in for, replacing any entry for their hosts,
// and lists the registry itself; no other registry is asked, so no lookup
// leaves the machine.
func withMirrors(policy []byte, registryHost string) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(policy, &doc); err != nil {
		return nil, err
	}
	ia := child(child(child(doc, "spec"), "rules"), "imageArchitecture")
	var regs []any
	if have, ok := ia["registries"].([]any); ok {
		for _, r := range have {
			// Entries of an already mirrored policy are replaced too.
			if m, ok := r.(map[string]any); !ok || !isMirrored(m["host"]) && m["host"] != registryHost {
				regs = append(regs, r)
			}
		}
	}
	for _, r := range mirroredRegistries {
		regs = append(regs, map[string]any{"name": r["name"], "host": r["host"], "mirror": registryHost})
	}
	ia["registries"] = append(regs, map[string]any{"name": "sandbox", "host": registryHost})
	ia["onlyListedRegistries"] = true
	return yaml.Marshal(doc)
}

func isMirrored(host any) bool {
	for _, r := range mirroredRegistries {
		if r["host"] == host {
			return true
		}
	}
	return false
}

// child returns m[key] as a map, creating it when missing.
func child(m map[string]any, key string) map[string]any {
	c, ok := m[key].(map[string]any)
	if !ok {
		c = map[string]any{}
		m[key] = c
	}
	return c
}
