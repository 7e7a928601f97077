#!/usr/bin/env bash
# Builds a node for the local cluster: kubelet, kube-proxy and kube-scheduler of the
# control plane's Kubernetes release, containerd 2 with its runc shim and ctr, runc,
# the pod sandbox's pause binary and a small echo server for data-plane tests, from
# their Go modules into a per-user cache keyed by
# version (beside the control plane's).
#
#   build.sh            build if missing; print the bin directory on stdout
#   build.sh --bin-dir  print the bin directory only (no build)
#
# Progress goes to stderr. DUALSTACK_CACHE overrides the cache root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOTOOLCHAIN=local

k8s_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kube/go.mod")"
go_version="$(go env GOVERSION)"
containerd_version="$(awk '$1 == "require" && $2 == "github.com/containerd/containerd/v2" {print $3}' "$here/containerd/go.mod")"
key="$(cat "$here"/kube/go.mod "$here"/kube/go.sum "$here"/kube/tools.go \
	"$here"/containerd/go.mod "$here"/containerd/go.sum "$here"/containerd/tools.go \
	"$here"/runc/go.mod "$here"/runc/go.sum "$here"/runc/tools.go "$here"/echo/go.mod "$here"/echo/main.go \
	"$here"/pause/go.mod "$here"/pause/main.go "$0" <(echo "$go_version") | sha256sum | cut -c1-12)"
cache_root="${DUALSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dualstack-operator}"
dir="$cache_root/node/k8s-$k8s_version-containerd-$containerd_version-$go_version-$key"
bin="$dir/bin"

if [[ "${1:-}" == "--bin-dir" ]]; then
	echo "$bin"
	exit 0
fi
if [[ -f "$dir/complete" ]]; then
	echo "node: cached in $bin" >&2
	echo "$bin"
	exit 0
fi

log() { echo "node: $*" >&2; }
progress() {
	awk -v what="$1" '/ / { print > "/dev/stderr"; next } { n++; if (n % 100 == 0) { printf "node: %s: %d packages compiled\n", what, n > "/dev/stderr"; fflush("/dev/stderr") } }
		END { printf "node: %s: %d packages compiled in total\n", what, n > "/dev/stderr" }'
}

start=$(date +%s)
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/bin"
trap 'rm -rf "$tmp"' EXIT

log "cold build of the kubelet, kube-proxy and kube-scheduler $k8s_version with $go_version"
built="$(cd "$here/kube" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
minor="$(echo "$k8s_version" | cut -d. -f2)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$built"
done

(cd "$here/kube" && go mod download)
(cd "$here/kube" && go build -v -trimpath -ldflags "$ldflags" -o "$tmp/bin/" \
	k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
	k8s.io/kubernetes/cmd/kube-scheduler 2>&1) | progress kubernetes
(cd "$here/containerd" && go mod download)
# No btrfs or devmapper snapshotters (they need C headers); overlayfs and native stay.
(cd "$here/containerd" && CGO_ENABLED=0 go build -v -trimpath -tags "no_btrfs no_devmapper" \
	-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$containerd_version" \
	-o "$tmp/bin/" github.com/containerd/containerd/v2/cmd/containerd \
	github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
	github.com/containerd/containerd/v2/cmd/ctr 2>&1) | progress containerd
# runc with libseccomp (Debian's libseccomp-dev), so RuntimeDefault seccomp applies.
(cd "$here/runc" && go mod download && CGO_ENABLED=1 go build -trimpath -tags seccomp \
	-ldflags "-s -w" -o "$tmp/bin/runc" github.com/opencontainers/runc)
(cd "$here/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/bin/pause" .)
(cd "$here/echo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/bin/echo" .)

for b in kubelet kube-proxy kube-scheduler containerd containerd-shim-runc-v2 ctr runc pause echo; do
	[[ -x "$tmp/bin/$b" ]] || { log "build did not produce $b"; exit 1; }
done
"$tmp/bin/kubelet" --version >&2
"$tmp/bin/containerd" --version >&2

rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
touch "$dir/complete"
log "built in $(($(date +%s) - start))s into $bin"
echo "$bin"
