//go:build tools

// Package tools pins the upstream node commands this module builds (the kubelet,
// kube-proxy and kube-scheduler of the same release as the control plane); it is
// never compiled itself (see the "tools" build tag).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
