//go:build tools

// Package tools pins MetalLB, whose controller (IP allocation only: no speaker, nothing
// announced) gives LoadBalancer Services their addresses in the local cluster's
// integration tests, built from its Go module. It is never compiled itself.
package tools

import _ "go.universe.tf/metallb/controller"
