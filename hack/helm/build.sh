#!/usr/bin/env bash
# Builds Helm from its Go module (pinned in go.mod) into the per-user cache: the GitOps
# tests install a real chart with it. Prints the helm binary's path (hack/gomodule.sh).
name=helm module=helm.sh/helm/v4 package=helm.sh/helm/v4/cmd/helm check=version
source "$(dirname "${BASH_SOURCE[0]}")/../gomodule.sh"
