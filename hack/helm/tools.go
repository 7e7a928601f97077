//go:build tools

// Package tools pins Helm, built from its Go module for the GitOps tests.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
