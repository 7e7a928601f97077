#!/usr/bin/env bash
# Builds one binary from a Go module pinned in a wrapper module's go.mod (beside the
# caller) into the per-user cache, keyed by version, module graph, the caller, this
# script and the Go toolchain. Sourced by hack/<tool>/build.sh, which sets:
#
#   name      the cache directory and binary name (helm, coredns, ...)
#   module    the module path whose version go.mod pins
#   package   the package to build
#   check     the argument that makes the binary print its version (a smoke test)
#
# It prints the binary's path on stdout; progress goes to stderr. DUALSTACK_CACHE
# overrides the cache root; CGO is off unless CGO_ENABLED says otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
export GOTOOLCHAIN=local
export CGO_ENABLED="${CGO_ENABLED:-0}"

version="$(awk -v m="$module" '($1 == "require" && $2 == m) || ($1 == m) {print ($1 == m ? $2 : $3)}' "$here/go.mod" | head -1)"
go_version="$(go env GOVERSION)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" "${BASH_SOURCE[1]}" "${BASH_SOURCE[0]}" <(echo "$go_version $CGO_ENABLED") |
	sha256sum | cut -c1-12)"
cache_root="${DUALSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dualstack-operator}"
dir="$cache_root/$name/$name-$version-$go_version-$key"

if [[ -f "$dir/complete" ]]; then
	echo "$name: cached in $dir" >&2
	echo "$dir/$name"
	exit 0
fi

start=$(date +%s)
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "$name: cold build of $module $version with $go_version" >&2
(cd "$here" && go mod download && go build -trimpath -ldflags "-s -w" -o "$tmp/$name" "$package")
"$tmp/$name" "$check" >&2
touch "$tmp/complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$name: built in $(($(date +%s) - start))s into $dir" >&2
echo "$dir/$name"
