#!/usr/bin/env bash
# Builds CoreDNS from its Go module (pinned in go.mod) into the per-user cache, keyed by
# version, module graph, this script and the Go toolchain: the node cluster runs it as
# kube-dns (the migration test resolves Services by name through it).
#
#   build.sh            build if missing; print the coredns binary's path on stdout
#
# Progress goes to stderr. DUALSTACK_CACHE overrides the cache root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOTOOLCHAIN=local

version="$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3}' "$here/go.mod")"
go_version="$(go env GOVERSION)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" "$0" <(echo "$go_version") |
	sha256sum | cut -c1-12)"
cache_root="${DUALSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dualstack-operator}"
dir="$cache_root/coredns/coredns-$version-$go_version-$key"

if [[ -f "$dir/complete" ]]; then
	echo "coredns: cached in $dir" >&2
	echo "$dir/coredns"
	exit 0
fi

start=$(date +%s)
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "coredns: cold build of CoreDNS $version with $go_version" >&2
(cd "$here" && go mod download && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/coredns" github.com/coredns/coredns)
"$tmp/coredns" -version >&2
touch "$tmp/complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "coredns: built in $(($(date +%s) - start))s into $dir" >&2
echo "$dir/coredns"
