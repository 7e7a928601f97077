"""The pure decision function: one table row per case, and properties over all shapes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dualstack_operator.api.models import DriftReason, DualStackPolicySpec, IPFamily, LabelSelector
from dualstack_operator.core.decision import State, decide, selects
from dualstack_operator.core.views import ServiceView
from support.decision_cases import CASES, SERVER_SAMPLE, V4, V6, policy, svc


@pytest.mark.parametrize(
    ("spec", "service", "cluster", "state", "reason", "patch"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decision_table(
    spec: DualStackPolicySpec,
    service: ServiceView,
    cluster: list[IPFamily],
    state: State,
    reason: str | None,
    patch: Any,
) -> None:
    decision = decide(spec, service, cluster)
    assert decision.state == state
    assert (decision.reason and str(decision.reason)) == reason
    assert decision.patch == (None if patch is None else {"spec": patch})
    if decision.state == State.DRIFTED:
        assert decision.message, "a drifted Service always says why"


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, {}, True),
        ({"matchLabels": {"tier": "web"}}, {"tier": "web"}, True),
        ({"matchLabels": {"tier": "web"}}, {"tier": "db"}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            {"tier": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
            {"tier": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, {"x": ""}, True),
        ({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, {"x": "1"}, False),
        (
            {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]},
            {"a": "1"},
            False,
        ),
    ],
)
def test_selector(selector: dict[str, Any] | None, labels: dict[str, str], expected: bool) -> None:
    parsed = None if selector is None else LabelSelector.model_validate(selector)
    assert selects(parsed, labels) is expected


# --- properties over every policy x Service shape x cluster shape -----------------------------

FAMILY_LISTS = [("IPv4",), ("IPv6",), ("IPv4", "IPv6"), ("IPv6", "IPv4")]
CLUSTERS = [[V4], [V6], [V4, V6], [V6, V4]]


@st.composite
def policies(draw: st.DrawFn) -> DualStackPolicySpec:
    ipfp = draw(st.sampled_from(["SingleStack", "PreferDualStack", "RequireDualStack"]))
    options: list[list[str] | None] = [None]
    if ipfp == "SingleStack":
        options += [["IPv4"], ["IPv6"]]
    elif ipfp == "PreferDualStack":
        options += [list(f) for f in FAMILY_LISTS]
    else:
        options += [["IPv4", "IPv6"], ["IPv6", "IPv4"]]
    return policy(ipfp, draw(st.sampled_from(options)), draw(st.sampled_from(["Enforce", "Audit"])))


@st.composite
def services(draw: st.DrawFn, cluster: list[IPFamily]) -> ServiceView:
    kind = draw(
        st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "Headless", "ExternalName"])
    )
    # What the API server could have stored: families the cluster offers (or once did).
    fams = draw(st.sampled_from(FAMILY_LISTS))
    svc_policy = (
        "SingleStack"
        if len(fams) == 1
        else draw(st.sampled_from(["PreferDualStack", "RequireDualStack"]))
    )
    if len(fams) == 1:
        svc_policy = draw(st.sampled_from(["SingleStack", "PreferDualStack"]))
    return svc(
        fams,
        svc_policy,
        type="ClusterIP" if kind == "Headless" else kind,
        headless=kind == "Headless",
        ignored=draw(st.booleans()),
    )


def apply_patch(service: ServiceView, patch: dict[str, Any]) -> ServiceView:
    """What the API server stores after our merge patch (rules pinned in the semantics tests)."""
    spec = patch["spec"]
    families = tuple(spec.get("ipFamilies", service.ip_families))
    if spec["ipFamilyPolicy"] == "SingleStack":
        families = families[:1]
    return dataclasses.replace(
        service, ip_family_policy=spec["ipFamilyPolicy"], ip_families=families
    )


@given(st.data())
def test_properties(data: st.DataObject) -> None:
    cluster = data.draw(st.sampled_from(CLUSTERS))
    spec = data.draw(policies())
    service = data.draw(services(cluster))
    decision = decide(spec, service, cluster)
    offered = {str(f) for f in cluster}

    if service.type == "ExternalName" or service.ignored:
        assert decision.state == State.EXCLUDED
        return
    assert decision.state != State.EXCLUDED
    if decision.state == State.COMPLIANT:
        assert decision.patch is None
    if decision.state == State.DRIFTED:
        assert decision.reason is not None
        assert decision.message
    if spec.mode == "Audit":
        assert decision.patch is None, "Audit never writes"
    if spec.ip_family_policy == "RequireDualStack" and len(cluster) < 2:
        assert decision.reason == DriftReason.CLUSTER_NOT_DUAL_STACK
        assert decision.patch is None
    if decision.patch is None:
        return

    patch_spec = decision.patch["spec"]
    assert set(patch_spec) <= {"ipFamilyPolicy", "ipFamilies"}, "the minimal patch"
    families = patch_spec.get("ipFamilies")
    if families is not None:
        held = set(service.ip_families)
        assert set(families) <= offered | held, "never a family the cluster lacks"
        if patch_spec["ipFamilyPolicy"] != "SingleStack":
            # The server refuses to release a family under a dual-stack policy.
            assert held <= set(families), "only SingleStack drops a family"
        assert len(set(families)) == len(families)
        if not service.headless:
            assert families[0] == service.ip_families[0], "never the primary of a ClusterIP"
        if patch_spec["ipFamilyPolicy"] == "SingleStack":
            assert len(families) == 1
        if patch_spec["ipFamilyPolicy"] == "RequireDualStack":
            assert len(families) == 2

    # One write converges: deciding again on what the server stored patches nothing.
    after = decide(spec, apply_patch(service, decision.patch), cluster)
    assert after.patch is None
    assert after.state == State.COMPLIANT or after.reason == DriftReason.PRIMARY_FAMILY_MISMATCH


def test_server_sample_covers_every_patch_shape() -> None:
    """The cases test_patches_accepted gives the real API server cover every patch shape."""
    reasons = {c[5] for c in SERVER_SAMPLE}
    assert {"MissingFamily", "ExtraFamily", "PolicyMismatch", "PrimaryFamilyMismatch"} <= reasons
    assert {c[2].type for c in SERVER_SAMPLE} >= {"ClusterIP", "NodePort"}
    assert any(c[2].headless for c in SERVER_SAMPLE)
