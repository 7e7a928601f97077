#!/usr/bin/env bash
# `make demo`: the whole story on a fresh machine with no cluster. Starts a local
# dual-stack control plane (its own state dir, so a `make cluster` is left alone),
# shows what the API server does with Service IP families, and stops everything
# it started, by PID, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

state=.local/demo
py=.venv/bin/python
bin="$(hack/controlplane/build.sh)"
kubectl=("$bin/kubectl" --kubeconfig "$state/kubeconfig")

cleanup() { "$py" hack/localcluster.py down --state-dir "$state" >/dev/null || true; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
families() {
	"${kubectl[@]}" get services -n "$1" -o custom-columns='SERVICE:.metadata.name,TYPE:.spec.type,POLICY:.spec.ipFamilyPolicy,FAMILIES:.spec.ipFamilies,CLUSTER-IPS:.spec.clusterIPs'
}

step "Starting a local dual-stack control plane (IPv4 primary)"
"$py" hack/localcluster.py up --state-dir "$state" --families ipv4,ipv6 | head -1
"${kubectl[@]}" get servicecidrs

step "Services as the API server defaults them"
"${kubectl[@]}" apply -f examples/services.yaml
families shop

step "The operator"
echo "The DualStackPolicy reconciler has not landed yet: once it does, this demo applies"
echo "examples/policy.yaml and shows the same Services after the operator made them match."

step "Stopping everything the demo started"
