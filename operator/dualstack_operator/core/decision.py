"""The pure decision: what one Service should look like under one policy.

No I/O and no kopf: a function from (policy spec, Service view, cluster families)
to a verdict and the minimal patch the API server accepts, or none. The rules it
relies on are pinned against the real API server in
``tests/integration/test_service_semantics.py``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dualstack_operator.api.models import (
    DriftReason,
    DualStackPolicySpec,
    FieldConflicts,
    IPFamily,
    IPFamilyPolicy,
    LabelSelector,
    Mode,
    PrimaryFamilyChange,
)
from dualstack_operator.core.views import ServiceView


class State(StrEnum):
    COMPLIANT = "compliant"
    DRIFTED = "drifted"
    EXCLUDED = "excluded"


@dataclass(frozen=True)
class Decision:
    state: State
    reason: DriftReason | None = None
    message: str = ""
    # A JSON merge patch for the Service, or None when nothing may or need be written.
    patch: dict[str, Any] | None = None


COMPLIANT = Decision(State.COMPLIANT)


def selects(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; absent selects everything."""
    if selector is None:
        return True
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions or []:
        present = req.key in labels
        values = req.values or []
        if req.operator == "In" and not (present and labels[req.key] in values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def address_families(spec: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The families a new Service's own ``clusterIP``/``clusterIPs`` fix, in their order.

    ``()`` when it names none (unset, empty, or headless ``None``); None when an address
    is not one the decision can read: the API server judges it, admission leaves it be.
    """
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if not ips or ips[0] == "None":
        return ()
    if len(ips) > 2:
        return None
    out = []
    for ip in ips:
        try:
            out.append("IPv6" if ipaddress.ip_address(str(ip)).version == 6 else "IPv4")
        except ValueError:
            return None
    return tuple(out)


def _fmt(families: Sequence[str]) -> str:
    return "[" + ", ".join(families) + "]"


def desired_families(
    spec: DualStackPolicySpec, held: Sequence[str], cluster: Sequence[IPFamily]
) -> tuple[list[str] | None, Decision | None]:
    """The families a Service holding ``held`` should have, or a no-write verdict when
    none can be reached.

    Without ``ipFamilies`` in the policy a Service keeps its own primary (which a
    ClusterIP Service cannot change anyway) and gains the cluster's other family. Under a
    dual-stack policy a Service keeps a family the cluster does not offer (a selectorless
    headless Service may have it; a cluster back to single-stack leaves it on others):
    only SingleStack releases a family.
    """
    offered = [str(f) for f in cluster]
    preference = [str(f) for f in spec.ip_families] if spec.ip_families else []
    order = preference or list(held[:1])
    order += [f for f in offered if f not in order]
    policy = spec.ip_family_policy

    if policy == IPFamilyPolicy.REQUIRE_DUAL_STACK and len(offered) < 2:
        return None, Decision(
            State.DRIFTED,
            DriftReason.CLUSTER_NOT_DUAL_STACK,
            f"RequireDualStack, but the cluster offers only {_fmt(offered)}; nothing was changed",
        )
    if policy == IPFamilyPolicy.SINGLE_STACK:
        if preference and preference[0] not in offered:
            return None, Decision(
                State.DRIFTED,
                DriftReason.FAMILY_NOT_IN_CLUSTER,
                f"{preference[0]} is not configured on this cluster (it offers "
                f"{_fmt(offered)}); nothing was changed",
            )
        return [f for f in order if f in offered][:1], None
    # PreferDualStack degrades to what the cluster offers; RequireDualStack has both here.
    kept = [f for f in held if f not in offered]
    order += [f for f in kept if f not in order]
    return [f for f in order if f in offered or f in kept][:2], None


def primary_mismatch(
    primary: str, desired: Sequence[str], change: PrimaryFamilyChange | None
) -> str:
    """The PrimaryFamilyMismatch message: what cannot be done, and the way to do it."""
    message = f"primary family {primary} cannot change in place"
    if change == PrimaryFamilyChange.RECREATE:
        return f"{message}; {desired[0]} primary needs a recreation"
    kept = f", keeping its {primary} ClusterIP where it can" if primary in desired else ""
    return (
        f"{message}: `spec.primaryFamilyChange: Recreate` on the policy recreates the "
        f"Service with {desired[0]} primary{kept}; `dualstack-operator plan` shows the risk "
        "first"
    )


def decide(spec: DualStackPolicySpec, svc: ServiceView, cluster: Sequence[IPFamily]) -> Decision:
    """The verdict for one Service the policy selects, with the patch to apply (Enforce)."""
    if svc.type == "ExternalName" or svc.ignored:
        return Decision(State.EXCLUDED)
    actual = list(svc.ip_families)
    primary = actual[0] if actual else None
    desired, verdict = desired_families(spec, actual, cluster)
    if verdict is not None or desired is None:
        return verdict or Decision(State.DRIFTED, DriftReason.FAMILY_NOT_IN_CLUSTER)
    policy = str(spec.ip_family_policy)

    target = desired
    residual: Decision | None = None
    if primary is not None and desired[0] != primary and not svc.headless:
        # A ClusterIP's primary family may not change once set: fix what can be fixed
        # (keep the primary, reach the desired set) and report the rest.
        residual = Decision(
            State.DRIFTED,
            DriftReason.PRIMARY_FAMILY_MISMATCH,
            primary_mismatch(primary, desired, spec.primary_family_change),
        )
        target = [primary, *[f for f in desired if f != primary][: len(desired) - 1]]
        if primary not in desired:
            # e.g. SingleStack [IPv6] wanted, IPv4-only Service: nothing can move.
            return residual
    if target == actual and svc.ip_family_policy == policy:
        return residual or COMPLIANT

    missing = [f for f in target if f not in actual]
    extra = [f for f in actual if f not in target]
    if missing:
        reason = DriftReason.MISSING_FAMILY
        message = f"missing {_fmt(missing)}: has {_fmt(actual)}, policy wants {_fmt(target)}"
    elif extra:
        reason = DriftReason.EXTRA_FAMILY
        message = f"extra {_fmt(extra)}: has {_fmt(actual)}, policy wants {_fmt(target)}"
    elif target != actual:
        # Same set, other order: only a headless Service gets here (primary may change).
        reason = DriftReason.PRIMARY_FAMILY_MISMATCH
        message = f"has {_fmt(actual)}, policy wants {_fmt(target)}"
    else:
        reason = DriftReason.POLICY_MISMATCH
        message = f"ipFamilyPolicy is {svc.ip_family_policy}, policy wants {policy}"

    if svc.applied_by and spec.field_conflicts == FieldConflicts.RESPECT:
        # A GitOps source of truth applies these fields: a write would be reverted at
        # its next sync (or, forced, break it). Say where the change belongs.
        return Decision(
            State.DRIFTED,
            DriftReason.MANAGED_BY_OTHER,
            f"ipFamilyPolicy/ipFamilies are applied by {', '.join(svc.applied_by)} "
            f"({message}); change it at the source, or set fieldConflicts: Force",
        )
    patch_spec: dict[str, Any] = {"ipFamilyPolicy": policy}
    if target != actual:
        # Sending the families explicitly is what upgrades a PreferDualStack Service
        # (re-sending the policy alone is a no-op since kubernetes#101681).
        patch_spec["ipFamilies"] = target
    patch = {"spec": patch_spec} if spec.mode == Mode.ENFORCE else None
    if residual is not None:
        return Decision(residual.state, residual.reason, residual.message, patch)
    return Decision(State.DRIFTED, reason, message, patch)
