//go:build tools

// Package tools pins the versions of the binaries that hack/build-tools.sh
// builds into bin/ for the end-to-end tests (envtest and real kubectl/helm).
// The blank imports keep them in go.mod when running `go mod tidy`.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
