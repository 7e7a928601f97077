//go:build tools

// Package tools pins CoreDNS, the cluster DNS of the local node cluster (kube-dns),
// built from its Go module. It is never compiled itself.
package tools

import _ "github.com/coredns/coredns"
