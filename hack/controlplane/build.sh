#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, etcd)
# and a version-matched kubectl from their Go modules into a per-user cache keyed by version, so that a fresh
# clone on the same machine reuses a previous build.
#
#   build.sh            build if missing; print the bin directory on stdout
#   build.sh --bin-dir  print the bin directory only (no build)
#
# Progress goes to stderr. DUALSTACK_CACHE overrides the cache root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOTOOLCHAIN=local

k8s_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kube/go.mod")"
etcd_version="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")"
go_version="$(go env GOVERSION)"
# The key covers everything that changes the binaries: versions, module graphs,
# wrapper sources, this script and the Go toolchain.
key="$(cat "$here"/kube/go.mod "$here"/kube/go.sum "$here"/kube/tools.go \
	"$here"/etcd/go.mod "$here"/etcd/go.sum "$here"/etcd/main.go "$0" \
	<(echo "$go_version") | sha256sum | cut -c1-12)"
cache_root="${DUALSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dualstack-operator}"
dir="$cache_root/controlplane/k8s-$k8s_version-etcd-$etcd_version-$go_version-$key"
bin="$dir/bin"

if [[ "${1:-}" == "--bin-dir" ]]; then
	echo "$bin"
	exit 0
fi

if [[ -f "$dir/complete" ]]; then
	echo "control plane: cached in $bin" >&2
	echo "$bin"
	exit 0
fi

log() { echo "control plane: $*" >&2; }

# Turns `go build -v` package lines into a progress line every 100 packages;
# anything else (compiler errors) is passed through.
progress() {
	awk -v what="$1" '/ / { print > "/dev/stderr"; next } { n++; if (n % 100 == 0) { printf "control plane: %s: %d packages compiled\n", what, n > "/dev/stderr"; fflush("/dev/stderr") } }
		END { printf "control plane: %s: %d packages compiled in total\n", what, n > "/dev/stderr" }'
}

start=$(date +%s)
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/bin"
trap 'rm -rf "$tmp"' EXIT

log "cold build of Kubernetes $k8s_version and etcd $etcd_version with $go_version (takes many minutes on 2 cores)"

# /version must report the real release, not v0.0.0: stamp it like upstream's build does.
# The module proxy records the release's time but not its commit, so gitCommit stays empty.
built="$(cd "$here/kube" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
minor="$(echo "$k8s_version" | cut -d. -f2)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$built"
done

log "downloading modules"
(cd "$here/kube" && go mod download)
(cd "$here/etcd" && go mod download)

log "building kube-apiserver, kube-controller-manager and kubectl"
(cd "$here/kube" && go build -v -trimpath -ldflags "$ldflags" -o "$tmp/bin/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kubectl 2>&1) | progress kubernetes

log "building etcd"
(cd "$here/etcd" && go build -v -trimpath -ldflags "-s -w" -o "$tmp/bin/etcd" . 2>&1) | progress etcd

for b in kube-apiserver kube-controller-manager kubectl etcd; do
	[[ -x "$tmp/bin/$b" ]] || { log "build did not produce $b"; exit 1; }
done
"$tmp/bin/kube-apiserver" --version >&2
"$tmp/bin/etcd" --version >&2

rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
touch "$dir/complete"
log "built in $(($(date +%s) - start))s into $bin"
echo "$bin"
