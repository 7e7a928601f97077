"""Faults injected into a real control plane while the operator works: it keeps
working, loses nothing and does not hammer a server that is away or throttling it.

Each test prints one ``FAULT`` line with its figures (time to converge after the
fault ended, operator requests during it, writes per Service); run with ``-s``.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from localcluster import REPO, LocalCluster
from localcluster.audit import Request, busiest_second
from support.kube import Kubectl, dsp, service, status_when, token_kubeconfig, wait_for
from support.operator_proc import OperatorProcess

StartOperator = Callable[..., OperatorProcess]

DUAL = ["IPv4", "IPv6"]


def _drifted_services(k: Kubectl, count: int) -> None:
    """``count`` single-stack Services (drifted under PreferDualStack), in one request."""
    items = [service(f"s{i:03}", selector={"app": "x"}) for i in range(count)]
    k.run(
        "create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )


def _accepted_patches(requests: list[Request], namespace: str) -> Counter[str]:
    return Counter(
        r.name
        for r in requests
        if r.namespace == namespace
        and r.resource == "services"
        and r.verb == "patch"
        and r.code == 200
    )


def _all_dual(k: Kubectl, count: int) -> bool:
    items = k.get("services")["items"]
    return len(items) == count and all(s["spec"].get("ipFamilies") == DUAL for s in items)


def _metric(operator: OperatorProcess, prefix: str, having: str = "") -> float:
    """The sum of the operator's samples starting with ``prefix`` and naming ``having``."""
    return sum(
        float(line.split()[-1])
        for line in operator.scrape().splitlines()
        if line.startswith(prefix) and having in line
    )


def _remediated(operator: OperatorProcess) -> float:
    return _metric(operator, "dualstack_remediations_total{", 'result="success"')


def _report(fault: str, **figures: Any) -> None:
    print(f"\nFAULT {fault}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def test_etcd_outage_and_api_server_restart_mid_convergence(
    faulty: Kubectl, fault_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """The API server crashes and restarts, then etcd stops for 10 s, while 500 Services
    converge."""
    count, ns = 500, faulty.namespace or ""
    _drifted_services(faulty, count)
    begin = time.time()
    operator = start_operator(fault_cluster, faulty)
    faulty.create(dsp(ipFamilyPolicy="PreferDualStack"))
    first = wait_for("the first remediations", lambda: _remediated(operator), 60, 0.05)
    outage = time.time()
    fault_cluster.restart_apiserver(crash=True)
    wait_for(
        "remediations after the restart",
        lambda: _remediated(operator) > first,
        60,
    )
    fault_cluster.stop_etcd()
    time.sleep(10)  # the fault's length, not a synchronisation
    fault_cluster.start_etcd()
    ended = time.time()
    status_when(faulty, lambda s: s.get("compliantServices") == count, timeout=180)
    converged = time.time()

    assert operator.alive(), "the operator crashed"
    assert _all_dual(faulty, count), "a Service was lost or left drifted"
    everything = fault_cluster.audit.between(begin, converged + 1)
    during = fault_cluster.audit.between(outage, ended)
    writes = _accepted_patches(everything, ns)
    # A write in flight when the API server was killed may be stored without its
    # audit entry: at most the operator's concurrent writes are unaccounted for.
    assert len(writes) >= count - 16, f"only {len(writes)} Services written"
    twice = {name: n for name, n in writes.items() if n > 1}
    assert not twice, f"written more than once: {twice}"
    # etcd away: the writes in flight hang in the API server; the API server away:
    # every write fails at once. Each failed write is counted; a hot loop would send
    # (and fail) all of the pass's remaining writes.
    failed = _metric(operator, 'dualstack_reconcile_errors_total{kind="service"}')
    assert failed > 0, "the outage never reached the operator: not a fault"
    assert failed <= 100, f"{failed} failed writes over the outage: not backing off"
    _report(
        "apiserver-crash-restart+etcd-stop-10s",
        converge_after_s=round(converged - ended, 1),
        requests_during=len(during),
        failed_writes=int(failed),
        writes_per_service=max(writes.values()),
    )


FLOW_SCHEMA = "dualstack-operator-tiny"
SERVICE_ACCOUNT = "system:serviceaccount:dualstack-system:dualstack-operator"
RBAC_KINDS = {
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
}


def _throttle(admin: Kubectl) -> None:
    """The operator's user on a priority level with the smallest share, rejecting (429)
    what does not fit instead of queueing it."""
    admin.apply(
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": FLOW_SCHEMA},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 1,
                    "lendablePercent": 0,
                    "borrowingLimitPercent": 0,
                    "limitResponse": {"type": "Reject"},
                },
            },
        }
    )
    every = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    admin.apply(
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": FLOW_SCHEMA},
            "spec": {
                "priorityLevelConfiguration": {"name": FLOW_SCHEMA},
                "matchingPrecedence": 100,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {
                                    "namespace": "dualstack-system",
                                    "name": "dualstack-operator",
                                },
                            }
                        ],
                        "resourceRules": [{**every, "namespaces": ["*"], "clusterScope": True}],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        }
    )

    def seats() -> str | None:
        # The API server's flow-control configuration follows these objects a moment later.
        for line in admin.run("get", "--raw", "/metrics").splitlines():
            if line.startswith("apiserver_flowcontrol_nominal_limit_seats{") and (
                f'priority_level="{FLOW_SCHEMA}"' in line
            ):
                return line.split()[-1]
        return None

    print(f"\n{FLOW_SCHEMA}: {wait_for('the priority level in effect', seats)} seat(s)")


def test_throttled_by_priority_and_fairness(
    faulty: Kubectl, fault_cluster: LocalCluster, start_operator: StartOperator, tmp_path: Path
) -> None:
    """The API server answers 429 to most of the operator's requests: it backs off,
    keeps its request rate bounded, and still converges with one write per Service."""
    count, ns = 300, faulty.namespace or ""
    admin = Kubectl(faulty.binary, faulty.kubeconfig)
    _drifted_services(faulty, count)
    # As deployed: the manifests' ServiceAccount and RBAC (the tests' usual client
    # certificate is in system:masters, which priority and fairness exempts).
    base = yaml.safe_load_all(admin.run("kustomize", str(REPO / "manifests" / "base")))
    rbac = [doc for doc in base if doc["kind"] in RBAC_KINDS]
    admin.run(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac})
    )
    config = token_kubeconfig(
        admin, fault_cluster, "dualstack-system", "dualstack-operator", tmp_path / "sa"
    )
    operator = start_operator(fault_cluster, faulty, kubeconfig=config)
    wait_for("the operator's metrics", lambda: operator.policy_passes() >= 0)
    _throttle(admin)
    try:
        began = time.time()
        faulty.create(dsp(ipFamilyPolicy="PreferDualStack"))
        status_when(faulty, lambda s: s.get("compliantServices") == count, timeout=240)
        converged = time.time()
        errors = _metric(operator, "dualstack_reconcile_errors_total")
    finally:
        admin.run("delete", "flowschema,prioritylevelconfiguration", FLOW_SCHEMA)
    requests = fault_cluster.audit.between(began, converged + 1, SERVICE_ACCOUNT)
    throttled = [r for r in requests if r.code == 429]
    assert throttled, "the server never throttled the operator: not a fault"
    assert errors > 0, "dualstack_reconcile_errors_total did not move"
    assert _all_dual(faulty, count)
    writes = _accepted_patches(requests, ns)
    assert len(writes) == count, "a Service never written"
    assert max(writes.values()) == 1, "one write per Service"
    # The first 429s come back for the writes already in flight (16, within a second);
    # then one write at a time fits the share, and probing for a second one costs a 429
    # or two per Retry-After (1 s). How many probes that makes depends on how long the
    # server takes per write (twice as many on a loaded machine), so the bound is a rate.
    first = min(r.at for r in throttled)
    probes = [r for r in throttled if r.at >= first + 1.0]
    assert len(throttled) - len(probes) <= 16, "more refusals than writes in flight"
    assert len(probes) <= (converged - first) + 2, (
        f"{len(probes)} refusals in {converged - first:.1f} s after the first: not backing off"
    )
    peak = busiest_second(throttled)
    # 16 writes in flight at most; after a 429 every write waits for Retry-After
    # with half the concurrency. Without that, a pass sends all of its 300 writes
    # into the refusals within a second or two.
    assert peak <= 40, f"{peak} refused requests within one second: not backing off"
    _report(
        "apf-reject-1-share",
        converge_s=round(converged - began, 1),
        requests=len(requests),
        throttled=len(throttled),
        busiest_second_429=peak,
        writes_per_service=max(writes.values()),
    )


def test_api_server_partitioned_longer_than_the_watch_timeouts(
    faulty: Kubectl, fault_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """SIGSTOP of the API server for 3x the operator's watch silence bound: its stalled
    watches are noticed and resumed, and changes around the partition are all seen."""
    ns = faulty.namespace or ""
    operator = start_operator(fault_cluster, faulty, "--watch-timeout-seconds=5")
    faulty.create(dsp(ipFamilyPolicy="PreferDualStack"))
    faulty.create(service("first"))
    wait_for("first fixed", lambda: faulty.get("service", "first")["spec"]["ipFamilies"] == DUAL)
    faulty.create(service("before"))  # its event may or may not reach the operator
    stopped = time.time()
    fault_cluster.signal_apiserver(signal.SIGSTOP)
    try:
        time.sleep(30)  # the partition's length (the silence bound is 10 s)
    finally:
        fault_cluster.signal_apiserver(signal.SIGCONT)
    resumed = time.time()
    faulty.create(service("after"))
    status_when(faulty, lambda s: s.get("compliantServices") == 3, timeout=90)
    converged = time.time()
    for name in ("first", "before", "after"):
        assert faulty.get("service", name)["spec"]["ipFamilies"] == DUAL, name
    assert operator.alive()
    log = operator.log()
    assert f"Services in namespace {ns}: watch broken" in log, (
        "the stalled Service watch was never noticed"
    )
    after = fault_cluster.audit.between(resumed, converged)
    _report(
        "apiserver-sigstop-30s",
        converge_after_s=round(converged - resumed, 1),
        requests_after=len(after),
        partition_s=round(resumed - stopped, 1),
    )


def test_a_second_status_writer_causes_no_write_storm_and_loses_no_counts(
    faulty: Kubectl, fault_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """Another controller keeps applying its own condition to the policy's status while
    the operator converges: both keep their fields, the operator writes only on change."""
    count, ns = 50, faulty.namespace or ""
    _drifted_services(faulty, count)
    operator = start_operator(fault_cluster, faulty)
    began = time.time()
    faulty.create(dsp(ipFamilyPolicy="PreferDualStack"))
    bumps = 0

    def bump() -> None:
        nonlocal bumps
        bumps += 1
        faulty.run(
            "apply",
            "--server-side",
            "--field-manager=other-checker",
            "--subresource=status",
            "-f",
            "-",
            stdin=json.dumps(
                {
                    "apiVersion": "dualstack.dev/v1alpha1",
                    "kind": "DualStackPolicy",
                    "metadata": {"name": "default"},
                    "status": {
                        "conditions": [
                            {
                                "type": "ExternalCheck",
                                "status": "True",
                                "reason": "Checked",
                                "message": f"check {bumps}",
                                "lastTransitionTime": "2026-11-28T00:00:00Z",
                            }
                        ]
                    },
                }
            ),
        )

    def converged_with_other() -> bool:
        bump()
        status = faulty.get("dsp", "default").get("status") or {}
        types = {c["type"] for c in status.get("conditions") or []}
        return status.get("compliantServices") == count and {"Ready", "ExternalCheck"} <= types

    wait_for("convergence beside the other writer", converged_with_other, timeout=120)
    for _ in range(20):  # keep bumping after convergence
        bump()
    status = faulty.get("dsp", "default")["status"]
    ended = time.time()
    assert operator.alive()
    assert status["compliantServices"] == count
    assert status["driftedServices"] == 0
    types = [c["type"] for c in status["conditions"]]
    assert sorted(types) == ["Compliant", "ExternalCheck", "Ready"], types
    writes = [
        r
        for r in fault_cluster.audit.between(began, ended + 1)
        if r.namespace == ns and r.resource == "dualstackpolicies/status" and r.code < 300
    ]
    assert len(writes) <= 2, f"{len(writes)} status writes for {bumps} bumps: a write storm"
    _report("second-status-writer", bumps=bumps, operator_status_writes=len(writes))
