"""The decision table shared by the unit tests and the real-server patch tests."""

from __future__ import annotations

from typing import Any

from dualstack_operator.api.models import DualStackPolicySpec, IPFamily
from dualstack_operator.core.decision import State
from dualstack_operator.core.views import ServiceView

V4, V6 = IPFamily.IPV4, IPFamily.IPV6
DUAL = [V4, V6]
DUAL6 = [V6, V4]
ONLY4 = [V4]


def policy(
    ip_family_policy: str, families: list[str] | None = None, mode: str = "Enforce"
) -> DualStackPolicySpec:
    body: dict[str, Any] = {"ipFamilyPolicy": ip_family_policy, "mode": mode}
    if families is not None:
        body["ipFamilies"] = families
    return DualStackPolicySpec.model_validate(body)


def svc(
    families: tuple[str, ...] = ("IPv4",),
    svc_policy: str | None = "SingleStack",
    *,
    type: str = "ClusterIP",
    headless: bool = False,
    ignored: bool = False,
    labels: dict[str, str] | None = None,
) -> ServiceView:
    if type == "ExternalName":
        families, svc_policy = (), None
    return ServiceView(
        namespace="ns",
        name="s",
        resource_version="1",
        labels=labels or {},
        ignored=ignored,
        type=type,
        headless=headless,
        ip_family_policy=svc_policy,
        ip_families=families,
    )


CASES: list[
    tuple[str, DualStackPolicySpec, ServiceView, list[IPFamily], State, str | None, Any]
] = [
    # id, policy, service, cluster, state, reason, patch spec (None = no write)
    (
        "clusterip-single-to-prefer",
        policy("PreferDualStack"),
        svc(),
        DUAL,
        State.DRIFTED,
        "MissingFamily",
        {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]},
    ),
    (
        "nodeport-single-to-require",
        policy("RequireDualStack"),
        svc(type="NodePort"),
        DUAL,
        State.DRIFTED,
        "MissingFamily",
        {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]},
    ),
    (
        "loadbalancer-compliant",
        policy("PreferDualStack"),
        svc(("IPv4", "IPv6"), "PreferDualStack", type="LoadBalancer"),
        DUAL,
        State.COMPLIANT,
        None,
        None,
    ),
    (
        "already-compliant",
        policy("PreferDualStack", ["IPv4", "IPv6"]),
        svc(("IPv4", "IPv6"), "PreferDualStack"),
        DUAL,
        State.COMPLIANT,
        None,
        None,
    ),
    (
        "policy-field-only",
        policy("RequireDualStack"),
        svc(("IPv4", "IPv6"), "PreferDualStack"),
        DUAL,
        State.DRIFTED,
        "PolicyMismatch",
        {"ipFamilyPolicy": "RequireDualStack"},
    ),
    (
        "downgrade-to-single",
        policy("SingleStack"),
        svc(("IPv4", "IPv6"), "PreferDualStack"),
        DUAL,
        State.DRIFTED,
        "ExtraFamily",
        {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]},
    ),
    (
        "wrong-primary-adds-secondary",
        policy("RequireDualStack", ["IPv6", "IPv4"]),
        svc(),
        DUAL,
        State.DRIFTED,
        "PrimaryFamilyMismatch",
        {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]},
    ),
    (
        "wrong-primary-nothing-else",
        policy("PreferDualStack", ["IPv6", "IPv4"]),
        svc(("IPv4", "IPv6"), "PreferDualStack"),
        DUAL,
        State.DRIFTED,
        "PrimaryFamilyMismatch",
        None,
    ),
    (
        "wrong-primary-single-unfixable",
        policy("SingleStack", ["IPv6"]),
        svc(),
        DUAL,
        State.DRIFTED,
        "PrimaryFamilyMismatch",
        None,
    ),
    (
        "headless-changes-primary",
        policy("RequireDualStack", ["IPv6", "IPv4"]),
        svc(headless=True),
        DUAL,
        State.DRIFTED,
        "MissingFamily",
        {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]},
    ),
    (
        "headless-reorders",
        policy("RequireDualStack", ["IPv6", "IPv4"]),
        svc(("IPv4", "IPv6"), "RequireDualStack", headless=True),
        DUAL,
        State.DRIFTED,
        "PrimaryFamilyMismatch",
        {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]},
    ),
    (
        "headless-no-selector-default-compliant",
        policy("RequireDualStack"),
        svc(("IPv4", "IPv6"), "RequireDualStack", headless=True),
        DUAL,
        State.COMPLIANT,
        None,
        None,
    ),
    (
        "external-name-excluded",
        policy("RequireDualStack"),
        svc(type="ExternalName"),
        DUAL,
        State.EXCLUDED,
        None,
        None,
    ),
    (
        "opted-out-excluded",
        policy("RequireDualStack"),
        svc(ignored=True),
        DUAL,
        State.EXCLUDED,
        None,
        None,
    ),
    (
        "audit-reports-no-patch",
        policy("PreferDualStack", mode="Audit"),
        svc(),
        DUAL,
        State.DRIFTED,
        "MissingFamily",
        None,
    ),
    (
        "require-on-single-stack",
        policy("RequireDualStack"),
        svc(),
        ONLY4,
        State.DRIFTED,
        "ClusterNotDualStack",
        None,
    ),
    (
        "prefer-on-single-stack-compliant",
        policy("PreferDualStack"),
        svc(("IPv4",), "PreferDualStack"),
        ONLY4,
        State.COMPLIANT,
        None,
        None,
    ),
    (
        "prefer-on-single-stack-sets-field",
        policy("PreferDualStack"),
        svc(),
        ONLY4,
        State.DRIFTED,
        "PolicyMismatch",
        {"ipFamilyPolicy": "PreferDualStack"},
    ),
    (
        "prefer-ipv6-first-degrades-on-v4-cluster",
        policy("PreferDualStack", ["IPv6", "IPv4"]),
        svc(("IPv4",), "PreferDualStack"),
        ONLY4,
        State.COMPLIANT,
        None,
        None,
    ),
    (
        "single-family-not-in-cluster",
        policy("SingleStack", ["IPv6"]),
        svc(),
        ONLY4,
        State.DRIFTED,
        "FamilyNotInCluster",
        None,
    ),
    (
        "ipv6-primary-cluster",
        policy("PreferDualStack"),
        svc(("IPv6",)),
        DUAL6,
        State.DRIFTED,
        "MissingFamily",
        {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"]},
    ),
    # kubernetes#101681: PreferDualStack Service left single-stack after the cluster gained IPv6.
    (
        "stale-prefer-upgraded-by-families",
        policy("PreferDualStack"),
        svc(("IPv4",), "PreferDualStack"),
        DUAL,
        State.DRIFTED,
        "MissingFamily",
        {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]},
    ),
]


# The patch cases the real API server is given (tests/integration/test_patches_accepted.py).
# A PreferDualStack Service with one family cannot be created on a dual-stack cluster
# (it arises only from a migration; test_reconciler covers that case end to end).
UNCREATABLE = {"stale-prefer-upgraded-by-families"}
SERVER_SAMPLE = [c for c in CASES if c[3] == DUAL and c[6] is not None and c[0] not in UNCREATABLE]
