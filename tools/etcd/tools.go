//go:build tools

// Package tools pins the etcd server built by hack/build-tools.sh into
// bin/etcd. It is a separate module from tools/ because k8s.io/kubernetes
// v1.37.2 requires the etcd v3.7 client libraries, which would upgrade
// etcd server v3.6's own api/client dependencies.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
