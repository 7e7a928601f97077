"""Pure planning for one namespace: which policy governs which Service, and the status.

Level-based: everything here is recomputed from the indexed Services and
policies on every pass; nothing is accumulated from events.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dualstack_operator.api.models import (
    DRIFT_LIST_LIMIT,
    AdmissionPath,
    Condition,
    DriftEntry,
    DriftReason,
    DualStackPolicyStatus,
    IPFamily,
    Mode,
)
from dualstack_operator.core.decision import Decision, State, decide, selects
from dualstack_operator.core.views import PolicyView, ServiceView
from dualstack_operator.runtime.settings import Admission


@dataclass
class PolicyPlan:
    policy: PolicyView
    decisions: dict[str, Decision] = field(default_factory=dict)

    def with_overrides(self, overrides: Mapping[str, Decision]) -> PolicyPlan:
        """A new plan with some verdicts replaced (refused writes); this one is untouched."""
        return PolicyPlan(self.policy, {**self.decisions, **overrides})

    def summary(self) -> Summary:
        """Counts by state and by drift reason (unbounded, unlike status.drift)."""
        states = Counter(d.state for d in self.decisions.values())
        reasons = Counter(d.reason for d in self.decisions.values() if d.reason is not None)
        return Summary(
            compliant=states[State.COMPLIANT],
            drifted=states[State.DRIFTED],
            excluded=states[State.EXCLUDED],
            reasons={r: reasons[r] for r in DriftReason},
        )


@dataclass(frozen=True)
class Summary:
    """What a pass concluded for one policy: the numbers behind its status and metrics."""

    compliant: int
    drifted: int
    excluded: int
    reasons: dict[DriftReason, int]


def plan_namespace(
    policies: Iterable[PolicyView],
    services: Iterable[ServiceView],
    cluster: Sequence[IPFamily],
) -> list[PolicyPlan]:
    """Decisions per policy; a Service selected by several goes to the oldest (then by name)."""
    plans = [PolicyPlan(p) for p in _by_age(policies)]
    for svc in sorted(services, key=lambda s: s.name):
        _assign(plans, svc, cluster)
    return plans


def _by_age(policies: Iterable[PolicyView]) -> list[PolicyView]:
    return sorted(policies, key=lambda p: (p.created, p.name))


def _assign(plans: Sequence[PolicyPlan], svc: ServiceView, cluster: Sequence[IPFamily]) -> None:
    """One Service's decision, under the oldest policy that selects it (plans by age)."""
    selecting = [
        plan
        for plan in plans
        if plan.policy.spec is not None and selects(plan.policy.spec.service_selector, svc.labels)
    ]
    if not selecting:
        return
    winner = selecting[0]
    assert winner.policy.spec is not None
    winner.decisions[svc.name] = decide(winner.policy.spec, svc, cluster)
    for loser in selecting[1:]:
        loser.decisions[svc.name] = Decision(
            State.DRIFTED,
            DriftReason.CONFLICT,
            f"also selected by the older policy {winner.policy.name}, which governs it",
        )


@dataclass
class _Planned:
    policies: tuple[PolicyView, ...]
    cluster: tuple[IPFamily, ...]
    seen: dict[str, ServiceView]  # the views the plans were decided from
    plans: list[PolicyPlan]


class Planner:
    """Plans by namespace, kept from pass to pass: a pass decides again only the Services
    whose cache entry changed (the cache holds a new view for every change) since the
    namespace's last plan, and all of them when its policies or the cluster change. Its
    answer is always ``plan_namespace``'s for the same inputs."""

    def __init__(self) -> None:
        self._last: dict[str, _Planned] = {}

    def plan(
        self,
        namespace: str,
        policies: Sequence[PolicyView],
        services: Mapping[str, ServiceView],
        cluster: Sequence[IPFamily],
    ) -> list[PolicyPlan]:
        last = self._last.get(namespace)
        ordered = tuple(_by_age(policies))
        if (
            last is None
            or len(last.policies) != len(ordered)
            or any(a is not b for a, b in zip(last.policies, ordered, strict=True))
            or last.cluster != tuple(cluster)
        ):
            plans = plan_namespace(ordered, services.values(), cluster)
            last = _Planned(ordered, tuple(cluster), dict(services), plans)
            self._last[namespace] = last
        else:
            seen = last.seen
            changed = [svc for name, svc in services.items() if seen.get(name) is not svc]
            gone = [name for name in seen if name not in services]
            for name in [*gone, *(svc.name for svc in changed)]:
                for plan in last.plans:
                    plan.decisions.pop(name, None)
            for svc in changed:
                _assign(last.plans, svc, cluster)
            if changed or gone:
                last.seen = dict(services)
        # The caller gets its own dicts: the kept ones change at the next pass.
        return [PolicyPlan(p.policy, dict(p.decisions)) for p in last.plans]

    def forget(self, namespace: str) -> None:
        self._last.pop(namespace, None)


def condition(
    ctype: str,
    status: Literal["True", "False"],
    reason: str,
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
        type=ctype,
        status=status,
        reason=reason,
        message=message,
        observedGeneration=generation,
        lastTransitionTime=since or now,
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
    generation, previous = policy.generation, policy.status
    if drifted:
        message = f"{drifted} of {matched} Services drifted{where}"
        compliant = condition(
            "Compliant", "False", "DriftDetected", message, generation, previous, stamp
        )
    else:
        message = f"all {matched} Services{where} match"
        compliant = condition(
            "Compliant", "True", "AllCompliant", message, generation, previous, stamp
        )
    governing = f"governing {matched} Services{where}"
    ready = condition("Ready", "True", "Reconciling", governing, generation, previous, stamp)
    return [ready, compliant]


def build_status(
    plan: PolicyPlan,
    cluster: Sequence[IPFamily],
    now: datetime.datetime | None = None,
    admission: Admission | None = None,
) -> dict[str, Any]:
    """The policy's status from its decisions (pure; compared before any write)."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy = plan.policy
    previous = policy.status
    generation = policy.generation
    if policy.spec is None:
        invalid = condition(
            "Ready", "False", "InvalidSpec", policy.spec_error, generation, previous, stamp
        )
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
            matchedServices=matched,
            compliantServices=summary.compliant,
            driftedServices=summary.drifted,
            excludedServices=summary.excluded,
            drift=drift,
            admission=admission_path(policy.spec.mode, admission),
            conditions=[ready, compliant],
        )
    )


def _dump(status: DualStackPolicyStatus) -> dict[str, Any]:
    """The status as the API stores it: camelCase, no unset fields, plain strings."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


OWN_CONDITIONS = frozenset({"Ready", "Compliant"})


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
