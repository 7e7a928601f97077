//go:build tools

// Package tools pins containerd 2 (the kubelet of Kubernetes v1.36 no longer
// supports containerd 1.x, which is what Debian packages): the daemon, its runc
// shim and ctr, built from their Go module. It is never compiled itself.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
