#!/usr/bin/env bash
# `make demo`: the whole story on a fresh machine with no cluster. Starts a local
# dual-stack control plane (its own state dir, so a `make cluster` is left alone),
# installs the CRD, applies examples/, shows `plan`, runs the operator with the
# policy, then makes IPv6 primary with primaryFamilyChange: Recreate (the IPv4
# ClusterIPs kept), and stops everything it started, by PID, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

state=.local/demo
py=.venv/bin/python
bin="$(hack/controlplane/build.sh)"
export KUBECONFIG="$PWD/$state/kubeconfig"
kubectl="$bin/kubectl"
operator_pid=""

cleanup() {
	if [[ -n "$operator_pid" ]] && kill -0 "$operator_pid" 2>/dev/null; then
		kill -TERM "$operator_pid"
		wait "$operator_pid" 2>/dev/null || true
	fi
	PYTHONPATH=hack "$py" -m localcluster down --state-dir "$state" >/dev/null || true
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
families() {
	"$kubectl" get services -n shop -o custom-columns='SERVICE:.metadata.name,TYPE:.spec.type,POLICY:.spec.ipFamilyPolicy,FAMILIES:.spec.ipFamilies,CLUSTER-IPS:.spec.clusterIPs'
}

step "A local dual-stack control plane (IPv4 primary), and the CRDs"
PYTHONPATH=hack "$py" -m localcluster up --state-dir "$state" --families ipv4,ipv6 | sed -n 1p
"$kubectl" apply -k crds/
"$kubectl" wait --for=condition=Established --timeout=60s -f crds/dualstackpolicy.yaml \
	-f crds/clusterdualstackpolicy.yaml -f crds/dualstackadmission.yaml >/dev/null

step "Before: Services as the API server defaults them"
"$kubectl" apply -f examples/services.yaml
families

step "What the policy would do, before anything is applied: dualstack-operator plan"
.venv/bin/dualstack-operator plan -n shop -f examples/policy.yaml

step "The operator, and the namespace's policy: RequireDualStack, IPv6 first"
# Recreations are journaled in the operator's namespace before any delete.
"$kubectl" create namespace dualstack-system >/dev/null
read -r metrics_port liveness_port webhook_port < <("$py" -c 'import sys; sys.path.insert(0, "hack"); from localcluster import free_port; print(free_port(), free_port(), free_port())')
.venv/bin/dualstack-operator run --metrics-address 127.0.0.1 --metrics-port "$metrics_port" \
	--liveness-port "$liveness_port" --admission --webhook-address 127.0.0.1 \
	--webhook-port "$webhook_port" --journal-namespace dualstack-system \
	>"$state/operator.log" 2>&1 &
operator_pid=$!
echo "operator running (pid $operator_pid, log $state/operator.log)"
cat examples/policy.yaml | grep -v '^#'
"$kubectl" apply -f examples/policy.yaml
"$kubectl" wait -n shop dsp/default --for=condition=Ready --timeout=60s >/dev/null

step "After: kubectl get dsp"
"$kubectl" get dsp -n shop
families
echo
echo "What the operator could not fix, and why (status.drift):"
"$kubectl" get dsp -n shop default -o jsonpath='{range .status.drift[*]}  {.service}: {.reason}: {.message}{"\n"}{end}'
echo
"$kubectl" get events -n shop --field-selector reason=Remediated -o custom-columns='SERVICE:.involvedObject.name,EVENT:.message'

step "A Service created now is born IPv6-first: admission (--admission) shapes it"
echo "The API server applies the policy compiled into a native MutatingAdmissionPolicy:"
"$kubectl" get mutatingadmissionpolicies,mutatingadmissionpolicybindings -l app.kubernetes.io/managed-by=dualstack-operator
# The API server loads a new policy within moments: until then it defaults as before.
for _ in $(seq 150); do
	born=$("$kubectl" create service clusterip probe -n shop --tcp=80 --dry-run=server -o jsonpath='{.spec.ipFamilies}')
	[[ "$born" == '["IPv6","IPv4"]' ]] && break
	sleep 0.2
done
"$kubectl" create service clusterip newcomer -n shop --tcp=80
"$kubectl" get service -n shop newcomer -o custom-columns='SERVICE:.metadata.name,POLICY:.spec.ipFamilyPolicy,FAMILIES:.spec.ipFamilies,CLUSTER-IPS:.spec.clusterIPs'

step "IPv6 primary for the rest: spec.primaryFamilyChange: Recreate"
echo "Before (the IPv4 ClusterIPs clients know):"
families
"$kubectl" patch dsp -n shop default --type=merge -p '{"spec":{"primaryFamilyChange":"Recreate"}}'
"$kubectl" wait -n shop dsp/default --for=jsonpath='{.status.driftedServices}'=0 --timeout=120s >/dev/null
echo "After: IPv6 primary, each IPv4 ClusterIP kept as the second address:"
families
echo
"$kubectl" get events -n shop --field-selector reason=Recreated,involvedObject.kind=Service -o custom-columns='SERVICE:.involvedObject.name,EVENT:.message'

step "Prometheus metrics (http://127.0.0.1:$metrics_port/metrics)"
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^dualstack_(services|service_drift|cluster_ip_families|policy_info|remediations_total|recreations_total)\{' | grep -v ' 0.0$'

step "Stopping everything the demo started"
