"""Services born compliant: the real API server calls the operator's webhook."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from dualstack_operator.admission import CONFIGURATION_NAME
from localcluster import LocalCluster, free_port
from support.audit import operator_writes, service_patches
from support.kube import Kubectl, dsp, service, status_when, wait_for
from support.operator_proc import OperatorProcess

pytestmark = pytest.mark.cluster

StartOperator = Callable[..., OperatorProcess]


def start_with_webhook(
    start_operator: StartOperator, cluster: LocalCluster, k: Kubectl
) -> OperatorProcess:
    operator = start_operator(
        cluster, k, "--admission", "--webhook-address=127.0.0.1", f"--webhook-port={free_port()}"
    )
    admin = Kubectl(k.binary, k.kubeconfig)

    def configured() -> bool:
        out = admin.run(
            "get",
            "mutatingwebhookconfiguration",
            CONFIGURATION_NAME,
            "--ignore-not-found",
            "-o",
            "json",
        )
        if not out.strip():
            return False
        url = json.loads(out)["webhooks"][0]["clientConfig"].get("url", "")
        return f":{_port(operator)}/" in url

    wait_for("the webhook configuration to point at this operator", configured)
    return operator


def _port(operator: OperatorProcess) -> str:
    return next(a.split("=", 1)[1] for a in operator.args if a.startswith("--webhook-port="))


def wait_until_webhook_shapes(k: Kubectl) -> None:
    """The webhook sees a new policy a moment after it exists: probe until it acts."""
    wait_for(
        "the webhook to shape new Services",
        lambda: (
            born(k, f"probe-{int(time.monotonic() * 1000) % 100000}")["spec"]["ipFamilies"]
            == ["IPv6", "IPv4"]
        ),
    )


def born(k: Kubectl, name: str, **spec: Any) -> dict[str, Any]:
    """Creates a Service the way a chart would (no family fields), returns what was stored."""
    return dict(k.create(service(name, selector={"app": name}, **spec)))


def test_service_is_born_ipv6_first_and_never_written_again(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with_webhook(start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    status_when(dual, lambda s: "matchedServices" in s)

    # The webhook may see the policy a moment after it exists: the first Service
    # created after the operator has it indexed is the one judged.
    def created_ipv6_first() -> dict[str, Any] | None:
        name = f"web-{int(time.monotonic() * 1000) % 100000}"
        svc = born(dual, name)
        return svc if svc["spec"]["ipFamilies"] == ["IPv6", "IPv4"] else None

    svc = wait_for("a Service born IPv6-first", created_ipv6_first)
    spec = svc["spec"]
    assert spec["ipFamilyPolicy"] == "RequireDualStack"
    assert ":" in spec["clusterIP"], "the primary ClusterIP is IPv6"
    assert ":" in spec["clusterIPs"][0]
    assert len(spec["clusterIPs"]) == 2

    name = svc["metadata"]["name"]
    rv = svc["metadata"]["resourceVersion"]
    # The status counts every Service only after a pass that left no write pending:
    # once it counts this one as compliant, the reconciler has judged it.
    total = len(dual.get("services")["items"])
    status_when(
        dual,
        lambda s: (
            s.get("matchedServices") == total
            and not any(d["service"] == name for d in s.get("drift") or [])
        ),
    )
    assert dual.get("service", name)["metadata"]["resourceVersion"] == rv
    assert name not in service_patches(operator_writes(dual_cluster, dual.namespace or ""))


def test_reconciler_and_webhook_agree(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with_webhook(start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv6", "IPv4"]))
    status_when(dual, lambda s: "matchedServices" in s)
    wait_until_webhook_shapes(dual)
    for i in range(5):
        born(dual, f"svc{i}")
        born(dual, f"hl{i}", clusterIP="None")
    total = len(dual.get("services")["items"])
    status = status_when(dual, lambda s: s.get("matchedServices") == total)
    assert (status["compliantServices"], status["driftedServices"]) == (total, 0)
    assert service_patches(operator_writes(dual_cluster, dual.namespace or "")) == {}


def test_namespace_without_policy_is_untouched(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with_webhook(start_operator, dual_cluster, dual)
    svc = born(dual, "plain")
    assert (svc["spec"]["ipFamilyPolicy"], svc["spec"]["ipFamilies"]) == ("SingleStack", ["IPv4"])


def test_audit_policy_warns_and_changes_nothing(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with_webhook(start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"], mode="Audit"))
    status_when(dual, lambda s: "matchedServices" in s)

    def warned() -> str | None:
        name = f"audited-{int(time.monotonic() * 1000) % 100000}"
        proc = dual.run_full(
            "create",
            "-f",
            "-",
            "-o",
            "json",
            stdin=json.dumps(service(name, selector={"app": "a"})),
        )
        stored = json.loads(proc.stdout)
        assert stored["spec"]["ipFamilies"] == ["IPv4"], "Audit never mutates"
        return proc.stderr if "would set" in proc.stderr else None

    warning = wait_for("an admission warning", warned)
    assert "Warning:" in warning
    assert "ipFamilyPolicy=RequireDualStack ipFamilies=IPv6,IPv4" in warning


def test_opted_out_and_external_name_pass_through(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with_webhook(start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    status_when(dual, lambda s: "matchedServices" in s)
    wait_until_webhook_shapes(dual)
    opted = service("legacy", selector={"app": "l"})
    opted["metadata"]["annotations"] = {"dualstack.dev/ignore": "true"}
    assert dual.create(opted)["spec"]["ipFamilies"] == ["IPv4"]
    ext = dual.create(service("ext", type="ExternalName", externalName="example.com"))
    assert "ipFamilies" not in ext["spec"]


def test_webhook_is_configured_to_be_harmless(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with_webhook(start_operator, dual_cluster, dual)
    admin = Kubectl(dual.binary, dual.kubeconfig)
    (hook,) = admin.get("mutatingwebhookconfiguration", CONFIGURATION_NAME)["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] <= 5
    assert hook["sideEffects"] == "None"
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["services"],
            "scope": "Namespaced",
        }
    ]
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == [dual.namespace]
    assert {c["name"] for c in hook["matchConditions"]} == {"not-external-name", "not-opted-out"}
    assert hook["clientConfig"]["caBundle"]


def test_operator_down_never_blocks_service_creation(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    operator = start_with_webhook(start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    operator.stop()
    # The configuration still points at the stopped operator.
    svc = dual.create(service("while-down", selector={"app": "x"}), "--request-timeout=10s")
    assert svc["spec"]["ipFamilies"] == ["IPv4"], "created, with the server's defaults"
