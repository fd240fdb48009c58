//go:build tools

// Package tools pins kwok, built by hack/build-tools.sh into bin/kwok: it
// plays the kubelet for the sandbox's simulated nodes. It is a separate
// module from tools/ because kwok v0.8.0 requires the k8s.io/* v0.36
// libraries, which tools/ pins at v0.37 for k8s.io/kubernetes.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
