"""Living with GitOps: fields another manager applies, and fights the operator gives up."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from localcluster import REPO, LocalCluster
from localcluster.audit import service_patches
from support.kube import Kubectl, KubectlError, dsp, service, status_when, wait_for
from support.operator_proc import OperatorProcess, after_next_pass

StartOperator = Callable[..., OperatorProcess]
SINGLE = {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}


def manifest(name: str) -> dict[str, Any]:
    return service(name, selector={"app": name}, **SINGLE)


def server_side_apply(k: Kubectl, body: dict[str, Any], *args: str) -> str:
    return k.run(
        "apply",
        "--server-side",
        "--field-manager=gitops",
        *args,
        "-f",
        "-",
        stdin=json.dumps(body),
    )


def patches(cluster: LocalCluster, k: Kubectl, name: str) -> int:
    return service_patches(cluster.audit.writes(k.namespace or "")).get(name, 0)


def drift_of(status: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((d for d in status.get("drift") or [] if d["service"] == name), None)


def test_fields_applied_by_gitops_are_reported_and_never_written(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    server_side_apply(dual, manifest("web"))
    operator = start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
    status = status_when(dual, lambda s: drift_of(s, "web") is not None)
    entry = drift_of(status, "web")
    assert entry is not None
    assert entry["reason"] == "ManagedByOther"
    assert "applied by gitops" in entry["message"]
    assert "change it at the source" in entry["message"]
    for i in range(5):
        # Each sync changes something else (a label), so each is an event and a pass.
        body = manifest("web")
        body["metadata"]["labels"] = {"sync": str(i)}
        after_next_pass(operator, lambda b=body: server_side_apply(dual, b))  # type: ignore[misc]
    assert patches(dual_cluster, dual, "web") == 0
    assert dual.get("service", "web")["spec"]["ipFamilies"] == ["IPv4"]


def test_force_takes_the_fields_once_and_gitops_then_sees_a_conflict(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    server_side_apply(dual, manifest("web"))
    operator = start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack", fieldConflicts="Force"))
    status_when(dual, lambda s: s.get("compliantServices") == 1)
    assert dual.get("service", "web")["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    # The next sync without --force-conflicts is refused: the correct GitOps signal.
    with pytest.raises(KubectlError, match="conflict"):
        server_side_apply(dual, manifest("web"))
    after_next_pass(operator, lambda: dual.run("label", "service", "web", "touched=1"))
    assert dual.get("service", "web")["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    assert patches(dual_cluster, dual, "web") == 1
    shown = dual.get("service", "web", "--show-managed-fields")
    managers = {m["manager"] for m in shown["metadata"]["managedFields"]}
    assert "dualstack-operator" in managers


def test_a_fight_ends_after_three_writes_with_reverted(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """Client-side apply and a plain patch keep undoing the fix: the operator gives up."""
    dual.run("apply", "-f", "-", stdin=json.dumps(manifest("web")))
    operator = start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
    fixes = 0
    reverts: list[Callable[[], object]] = [
        lambda: dual.run("apply", "-f", "-", stdin=json.dumps(manifest("web"))),
        lambda: dual.patch("service", "web", {"spec": SINGLE}),
    ]
    for round_ in range(6):
        wait_for(
            "the operator to fix it, or give up",
            lambda: (
                dual.get("service", "web")["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
                or (drift_of(dual.get("dsp", "default").get("status") or {}, "web") or {}).get(
                    "reason"
                )
                == "Reverted"
            ),
        )
        if dual.get("service", "web")["spec"]["ipFamilies"] != ["IPv4", "IPv6"]:
            break
        fixes += 1
        reverts[round_ % 2]()
    assert fixes == 3
    status = status_when(dual, lambda s: (drift_of(s, "web") or {}).get("reason") == "Reverted")
    entry = drift_of(status, "web")
    assert entry is not None
    assert "reverted 3 times" in entry["message"]
    # Then silence: more events (the fighters touch other fields too), passes, no writes.
    for i in range(3):
        label = functools.partial(dual.run, "label", "service", "web", f"round={i}", "--overwrite")
        after_next_pass(operator, label)
    assert patches(dual_cluster, dual, "web") == 3
    warnings = [e for e in dual.get("events")["items"] if e["reason"] == "Reverted"]
    assert len(warnings) == 1
    assert warnings[0]["type"] == "Warning"


def test_a_helm_chart_that_pins_the_families_is_reported_not_fought(
    dual: Kubectl,
    dual_cluster: LocalCluster,
    start_operator: StartOperator,
    helm: Path,
    tmp_path: Path,
) -> None:
    """Helm 4 installs with server-side apply as "helm": the chart is the source of truth."""
    chart = REPO / "tests" / "fixtures" / "chart"
    env = {**os.environ, "KUBECONFIG": str(dual.kubeconfig), "HOME": str(tmp_path)}

    def helm_run(verb: str, release: str, *args: str) -> None:
        argv = [str(helm), verb, release, str(chart), "-n", dual.namespace or "", *args]
        subprocess.run(argv, env=env, check=True, capture_output=True, text=True, timeout=120)

    helm_run("install", "web")
    assert dual.get("service", "web")["spec"]["ipFamilyPolicy"] == "SingleStack"
    operator = start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
    status = status_when(dual, lambda s: drift_of(s, "web") is not None)
    entry = drift_of(status, "web")
    assert entry is not None
    assert entry["reason"] == "ManagedByOther"
    assert "applied by helm" in entry["message"]
    for i in range(3):  # upgrades that change something else: events, passes, no writes
        after_next_pass(
            operator,
            lambda i=i: helm_run("upgrade", "web", "--set", f"replicasNote={i}"),  # type: ignore[misc]
        )
    assert patches(dual_cluster, dual, "web") == 0
    assert dual.get("service", "web")["spec"]["ipFamilies"] == ["IPv4"]
