//go:build tools

// Package tools pins the upstream commands this module builds; it is never
// compiled itself (see the "tools" build tag).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
