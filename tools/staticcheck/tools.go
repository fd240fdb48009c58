//go:build tools

// Package tools pins the staticcheck that `make lint` builds into
// bin/staticcheck. It is a module of its own so that staticcheck's
// dependencies (golang.org/x/tools and others) enter neither kpoguard's
// go.mod nor the kube-apiserver tools module.
package tools

import (
	_ "honnef.co/go/tools/cmd/staticcheck"
)
