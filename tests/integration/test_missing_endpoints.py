"""MissingEndpoints against the real API server: a dual-stack Service whose
EndpointSlices hold ready endpoints of one family only (its backends are single-stack)
is reported, with no write to it; once the other family has a ready endpoint too, it
is compliant again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localcluster import LocalCluster
from localcluster.audit import service_patches
from support.kube import Kubectl, dsp, service, status_when, wait_for
from support.operator_proc import OperatorProcess

StartOperator = Callable[..., OperatorProcess]


def _slice(name: str, family: str, addresses: list[str], ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/service-name": "api",
                # Not the controller's: a Service without a selector, backends by hand.
                "endpointslice.kubernetes.io/managed-by": "tests.dualstack.dev",
            },
        },
        "addressType": family,
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses],
    }


def test_a_family_without_ready_endpoints_is_reported_and_never_dropped(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    ns = dual.namespace or ""
    dual.create(service("api", ipFamilyPolicy="RequireDualStack"))  # no selector
    dual.create(_slice("api-v4", "IPv4", ["192.0.2.10", "192.0.2.11"], ready=True))
    dual.create(_slice("api-v6", "IPv6", ["2001:db8::10"], ready=False))
    operator = start_operator(dual_cluster, dual, "--resync-seconds=2")
    dual.create(dsp(ipFamilyPolicy="RequireDualStack"))
    status = status_when(dual, lambda s: s.get("driftedServices") == 1)
    (entry,) = status["drift"]
    assert entry["service"] == "api"
    assert entry["reason"] == "MissingEndpoints"
    assert "no ready IPv6 endpoint while IPv4 has 2" in entry["message"]
    assert "refused" in entry["message"]
    compliant = next(c for c in status["conditions"] if c["type"] == "Compliant")
    assert compliant["status"] == "False"
    metric = (
        f'dualstack_service_drift{{namespace="{ns}",policy="default",reason="MissingEndpoints"}}'
    )
    wait_for("the drift metric", lambda: f"{metric} 1.0" in operator.scrape())

    dual.patch(
        "endpointslice",
        "api-v6",
        {"endpoints": [{"addresses": ["2001:db8::10"], "conditions": {"ready": True}}]},
    )
    status_when(dual, lambda s: s.get("compliantServices") == 1 and not s.get("drift"))
    spec = dual.get("service", "api")["spec"]
    assert spec["ipFamilies"] == ["IPv4", "IPv6"], "the family was kept"
    assert not service_patches(dual_cluster.audit.writes(ns)), "nothing was written"
