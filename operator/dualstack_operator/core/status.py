"""A policy's status, computed from its plan (pure; compared before any write)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from dualstack_operator.api.models import (
    DRIFT_LIST_LIMIT,
    Admission,
    AdmissionPath,
    ClusterDriftEntry,
    ClusterDualStackPolicyStatus,
    Condition,
    DriftEntry,
    DriftReason,
    DualStackPolicySpec,
    DualStackPolicyStatus,
    IPFamily,
    IPFamilyPolicy,
    Mode,
    PrimaryFamilyChange,
)
from dualstack_operator.api.reasons import ConditionReason, ConditionType
from dualstack_operator.core.decision import State
from dualstack_operator.core.plan import PolicyPlan
from dualstack_operator.core.readiness import DnsCheck
from dualstack_operator.core.recreation import Unavailable
from dualstack_operator.core.views import PolicyView


def condition(
    ctype: ConditionType,
    status: Literal["True", "False"],
    reason: ConditionReason,
    message: str,
    generation: int,
    previous: Mapping[str, Any],
    now: str,
) -> Condition:
    """A metav1.Condition; lastTransitionTime moves only when the status flips."""
    old = next(
        (c for c in previous.get("conditions") or [] if c.get("type") == ctype),
        None,
    )
    since = now if old is None or old.get("status") != status else old.get("lastTransitionTime")
    return Condition(
        type=str(ctype),
        status=status,
        reason=str(reason),
        message=message,
        observedGeneration=generation,
        lastTransitionTime=since or now,
    )


def invalid_spec(policy: PolicyView, stamp: str) -> Condition:
    """Ready False for a policy whose spec the operator cannot read."""
    at = (policy.generation, policy.status, stamp)
    return condition(
        ConditionType.READY, "False", ConditionReason.INVALID_SPEC, policy.spec_error, *at
    )


def admission_path(mode: Mode, admission: Admission | None) -> AdmissionPath | None:
    """What status.admission says for a policy in this mode under this mechanism."""
    if admission == Admission.WEBHOOK:
        return AdmissionPath.WEBHOOK
    if admission == Admission.POLICY:
        if mode == Mode.AUDIT:
            return AdmissionPath.VALIDATING_ADMISSION_POLICY
        return AdmissionPath.MUTATING_ADMISSION_POLICY
    return None


def outcome_conditions(
    drifted: int, matched: int, where: str, policy: PolicyView, stamp: str
) -> list[Condition]:
    """Ready and Compliant for a policy that was reconciled (``where``: " in N namespaces")."""
    at = (policy.generation, policy.status, stamp)
    if drifted:
        message = f"{drifted} of {matched} Services drifted{where}"
        compliant = condition(
            ConditionType.COMPLIANT, "False", ConditionReason.DRIFT_DETECTED, message, *at
        )
    else:
        message = f"all {matched} Services{where} match"
        compliant = condition(
            ConditionType.COMPLIANT, "True", ConditionReason.ALL_COMPLIANT, message, *at
        )
    governing = f"governing {matched} Services{where}"
    ready = condition(ConditionType.READY, "True", ConditionReason.RECONCILING, governing, *at)
    return [ready, compliant]


def dns_condition(policy: PolicyView, dns: DnsCheck | None, stamp: str) -> list[Condition]:
    """ClusterDNS on a dual-stack cluster: False (ClusterDNSSingleStack, advisory) while
    the kube-dns Service has one family; absent where it was not checked."""
    if dns is None:
        return []
    at = (policy.generation, policy.status, stamp)
    if dns.finding is not None:
        reason = ConditionReason(dns.finding.reason)  # ClusterDNSSingleStack
        return [condition(ConditionType.CLUSTER_DNS, "False", reason, dns.finding.message, *at)]
    served = f"kube-system/{dns.name} serves {', '.join(dns.families)}"
    dual = ConditionReason.CLUSTER_DNS_DUAL_STACK
    return [condition(ConditionType.CLUSTER_DNS, "True", dual, served, *at)]


def recreate_condition(
    policy: PolicyView, blocked: Unavailable | None, stamp: str
) -> list[Condition]:
    """RecreateAvailable, for a policy that asks for primaryFamilyChange: Recreate: False
    with the missing right (or journal namespace) when recreation cannot work here."""
    spec = policy.spec
    if spec is None or spec.mode != Mode.ENFORCE:
        return []
    if spec.primary_family_change != PrimaryFamilyChange.RECREATE:
        return []
    at = (policy.generation, policy.status, stamp)
    if blocked is not None:
        reason = ConditionReason(blocked.reason)  # MissingRights, JournalNamespaceMissing
        kind = ConditionType.RECREATE_AVAILABLE
        return [condition(kind, "False", reason, blocked.message, *at)]
    available = "Services whose primary family is wrong are recreated"
    ok = ConditionReason.AVAILABLE
    return [condition(ConditionType.RECREATE_AVAILABLE, "True", ok, available, *at)]


def families_column(spec: DualStackPolicySpec, cluster: Sequence[IPFamily]) -> str | None:
    """status.families, the FAMILIES column (a column's JSONPath cannot join a list):
    "IPv6,IPv4" as the spec writes it, the intent even where the cluster cannot meet it
    (the drift says so). Without ipFamilies, what a new Service gets here: the cluster's
    families, primary first, one for SingleStack (an existing Service keeps its own
    primary). None while the cluster's families are unknown."""
    if spec.ip_families:
        return ",".join(spec.ip_families)
    offered = list(cluster)
    if spec.ip_family_policy == IPFamilyPolicy.SINGLE_STACK:
        offered = offered[:1]
    return ",".join(offered) or None


def build_status(
    plan: PolicyPlan,
    cluster: Sequence[IPFamily],
    now: datetime.datetime | None = None,
    admission: Admission | None = None,
    dns: DnsCheck | None = None,
) -> dict[str, Any]:
    """The policy's status from its decisions (pure; compared before any write)."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy = plan.policy
    generation = policy.generation
    if policy.spec is None:
        invalid = invalid_spec(policy, stamp)
        return _dump(DualStackPolicyStatus(observedGeneration=generation, conditions=[invalid]))
    summary = plan.summary()
    drifted = sorted((name, d) for name, d in plan.decisions.items() if d.state == State.DRIFTED)
    matched = summary.compliant + summary.drifted
    drift = [
        DriftEntry(service=name, reason=d.reason or DriftReason.CONFLICT, message=d.message)
        for name, d in drifted[:DRIFT_LIST_LIMIT]
    ]
    ready, compliant = outcome_conditions(len(drifted), matched, "", policy, stamp)
    return _dump(
        DualStackPolicyStatus(
            observedGeneration=generation,
            clusterIPFamilies=list(cluster),
            families=families_column(policy.spec, cluster),
            matchedServices=matched,
            compliantServices=summary.compliant,
            driftedServices=summary.drifted,
            excludedServices=summary.excluded,
            drift=drift,
            admission=admission_path(policy.spec.mode, admission),
            conditions=[
                ready,
                compliant,
                *recreate_condition(policy, plan.recreate_blocked, stamp),
                *dns_condition(policy, dns, stamp),
            ],
        )
    )


def _dump(status: DualStackPolicyStatus) -> dict[str, Any]:
    """The status as the API stores it: camelCase, no unset fields, plain strings."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


OWN_CONDITIONS = frozenset(str(t) for t in ConditionType)


def status_differs(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether a status write is needed: only the operator's own fields and conditions
    count (another controller's condition never causes a write), timestamps never."""

    def strip(status: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(status)
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
            if c.get("type") in OWN_CONDITIONS
        ]
        return out

    return strip(current) != strip(desired)


def build_cluster_status(
    policy: PolicyView,
    parts: Mapping[str, PolicyPlan],
    cluster: Sequence[IPFamily],
    admission: Admission | None = None,
    now: datetime.datetime | None = None,
    dns: DnsCheck | None = None,
) -> dict[str, Any]:
    """The status of a cluster policy from its settled plan in each governed namespace."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    generation = policy.generation
    if policy.spec is None:
        invalid = invalid_spec(policy, stamp)
        status = ClusterDualStackPolicyStatus(observedGeneration=generation, conditions=[invalid])
        return status.model_dump(mode="json", by_alias=True, exclude_none=True)
    compliant = drifted = excluded = 0
    drift: list[tuple[str, str, DriftReason, str]] = []
    for ns in sorted(parts):
        summary = parts[ns].summary()
        compliant, drifted = compliant + summary.compliant, drifted + summary.drifted
        excluded += summary.excluded
        for name, d in sorted(parts[ns].decisions.items()):
            if d.state == State.DRIFTED:
                drift.append((ns, name, d.reason or DriftReason.CONFLICT, d.message))
    matched = compliant + drifted
    blocked = [p.recreate_blocked for p in parts.values() if p.recreate_blocked is not None]
    where = f" in {len(parts)} namespaces"
    ready, compliance = outcome_conditions(len(drift), matched, where, policy, stamp)
    status = ClusterDualStackPolicyStatus(
        observedGeneration=generation,
        clusterIPFamilies=list(cluster),
        families=families_column(policy.spec, cluster),
        governedNamespaces=len(parts),
        matchedServices=matched,
        compliantServices=compliant,
        driftedServices=drifted,
        excludedServices=excluded,
        drift=[
            ClusterDriftEntry(namespace=ns, service=name, reason=reason, message=message)
            for ns, name, reason, message in drift[:DRIFT_LIST_LIMIT]
        ],
        admission=admission_path(policy.spec.mode, admission),
        conditions=[
            ready,
            compliance,
            *recreate_condition(policy, next(iter(blocked), None), stamp),
            *dns_condition(policy, dns, stamp),
        ],
    )
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
