"""The patches the decision logic emits, applied to the real API server: all accepted,
and one write converges (deciding again on what the server stored patches nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from dualstack_operator.core.decision import State, decide
from dualstack_operator.core.views import ServiceView
from support.decision_cases import DUAL
from support.decision_cases import SERVER_SAMPLE as SAMPLE
from support.kube import Kubectl, service


def manifest(view: ServiceView) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"app": "x"},
        "ipFamilyPolicy": view.ip_family_policy,
        "ipFamilies": list(view.ip_families),
    }
    if view.type != "ClusterIP":
        spec["type"] = view.type
    if view.headless:
        spec["clusterIP"] = "None"
    return service("svc", **spec)


@pytest.mark.parametrize(
    ("spec", "view"), [(c[1], c[2]) for c in SAMPLE], ids=[c[0] for c in SAMPLE]
)
def test_the_server_accepts_what_the_logic_emits(
    dual: Kubectl, spec: Any, view: ServiceView
) -> None:
    created = dual.create(manifest(view))
    stored = ServiceView.from_body(created)
    assert stored.ip_families == view.ip_families, "the fixture built the intended shape"
    decision = decide(spec, stored, DUAL)
    assert decision.patch is not None
    patch = {**decision.patch, "metadata": {"resourceVersion": stored.resource_version}}
    after = ServiceView.from_body(dual.patch("service", "svc", patch))
    assert after.ip_family_policy == decision.patch["spec"]["ipFamilyPolicy"]
    if "ipFamilies" in decision.patch["spec"]:
        assert list(after.ip_families) == decision.patch["spec"]["ipFamilies"]
    again = decide(spec, after, DUAL)
    assert again.patch is None
    assert again.state == State.COMPLIANT or again.reason == "PrimaryFamilyMismatch"
