#!/usr/bin/env bash
# Builds Kyverno's admission and background controllers from its Go module (pinned in
# go.mod) into the per-user cache, for the peer comparison in `make bench` only (never
# `make test`). Prints three lines: the two binaries' paths, then the module's CRD
# directory. A cold build takes minutes: it says so, and how long it took.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module=github.com/kyverno/kyverno
build() { (name="$1" package="$module/cmd/$2" check=-help source "$here/../gomodule.sh"); }
build kyverno kyverno
build kyverno-background-controller background-controller
(cd "$here" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}/config/crds' "$module")
