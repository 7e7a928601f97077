//go:build tools

// Package tools pins Kyverno's two controllers for `make kyverno` (the peer in
// hack/bench_peers.py; never part of `make test`).
package tools

import (
	_ "github.com/kyverno/kyverno/cmd/background-controller"
	_ "github.com/kyverno/kyverno/cmd/kyverno"
)
