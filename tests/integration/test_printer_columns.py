"""`kubectl get dsp` and `kubectl get cdsp` as a user reads them, from the real API
server's table printing: FAMILIES reads ``IPv6,IPv4``, not the JSON of a list (a
column's JSONPath cannot join one, so the operator writes ``status.families``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from localcluster import LocalCluster
from support.kube import Kubectl, dsp, status_when, wait_for
from support.operator_proc import OperatorProcess

StartOperator = Callable[..., OperatorProcess]


def column(k: Kubectl, kind: str, name: str, header: str) -> str:
    """One cell of ``kubectl get KIND NAME``'s table, by position: kubectl aligns each
    column under its header, and a cell may be empty."""
    head, row = k.run("get", kind, name).splitlines()
    starts = {m.group(): m.start() for m in re.finditer(r"\S+", head)}
    after = sorted(p for p in starts.values() if p > starts[header])
    return row[starts[header] : after[0] if after else None].strip()


def test_families_column_of_namespaced_policies(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_operator(dual_cluster, dual)
    dual.create(dsp("first", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    # Without ipFamilies: what a new Service gets on this IPv4-primary dual-stack cluster.
    dual.create(dsp("plain", ipFamilyPolicy="PreferDualStack"))
    dual.create(dsp("single", ipFamilyPolicy="SingleStack"))

    for name in ("first", "plain", "single"):
        status_when(dual, lambda s: "matchedServices" in s, name)
    assert column(dual, "dsp", "first", "FAMILIES") == "IPv6,IPv4"
    assert column(dual, "dsp", "plain", "FAMILIES") == "IPv4,IPv6"
    assert column(dual, "dsp", "single", "FAMILIES") == "IPv4"

    # The column follows the spec: the status is written again when it changes.
    dual.patch("dsp", "plain", {"spec": {"ipFamilies": ["IPv6"], "ipFamilyPolicy": "SingleStack"}})
    status_when(dual, lambda s: s.get("families") == "IPv6", "plain")
    assert column(dual, "dsp", "plain", "FAMILIES") == "IPv6"


def test_families_column_of_a_cluster_policy(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    admin = Kubectl(dual.binary, dual.kubeconfig)
    namespace = dual.namespace or ""
    admin.run("label", "namespace", namespace, f"printer={namespace}")
    name = f"printer-{uuid.uuid4().hex[:6]}"
    policy: dict[str, Any] = {
        "apiVersion": "dualstack.dev/v1alpha1",
        "kind": "ClusterDualStackPolicy",
        "metadata": {"name": name},
        "spec": {
            "ipFamilyPolicy": "PreferDualStack",
            "ipFamilies": ["IPv6", "IPv4"],
            "namespaceSelector": {"matchLabels": {"printer": namespace}},
        },
    }
    start_operator(dual_cluster, dual)
    try:
        admin.create(policy)
        wait_for(
            "the cluster policy's status",
            lambda: "matchedServices" in (admin.get("cdsp", name).get("status") or {}),
        )
        assert column(admin, "cdsp", name, "FAMILIES") == "IPv6,IPv4"
    finally:
        admin.run("delete", "cdsp", name, "--ignore-not-found")
