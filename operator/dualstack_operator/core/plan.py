"""Pure planning for one namespace: which policy governs which Service, and the status.

Level-based: everything here is recomputed from the indexed Services and
policies on every pass; nothing is accumulated from events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dualstack_operator.api.models import (
    DriftReason,
    IPFamily,
)
from dualstack_operator.core.decision import Decision, State, decide, selects
from dualstack_operator.core.recreation import Unavailable
from dualstack_operator.core.views import PolicyView, ServiceView


@dataclass
class PolicyPlan:
    policy: PolicyView
    decisions: dict[str, Decision] = field(default_factory=dict)
    # Why the recreation this policy asks for cannot work here (None: it can, or it asks
    # for none): its RecreateAvailable condition.
    recreate_blocked: Unavailable | None = None

    def with_overrides(self, overrides: Mapping[str, Decision]) -> PolicyPlan:
        """A new plan with some verdicts replaced (refused writes); this one is untouched."""
        return PolicyPlan(self.policy, {**self.decisions, **overrides}, self.recreate_blocked)

    def blocked(self, why: Unavailable) -> PolicyPlan:
        return PolicyPlan(self.policy, self.decisions, why)

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


def override_compliant(
    plans: list[PolicyPlan], verdict: Callable[[str], Decision | None]
) -> list[PolicyPlan]:
    """The plans with ``verdict(name)`` in place of each compliant Service's decision,
    where it gives one (what is reported past the Service's fields: its endpoints, what
    stands in front of it); plans without such a Service are returned as they are."""
    out = []
    for plan in plans:
        overrides = {}
        for name, decision in plan.decisions.items():
            if decision.state == State.COMPLIANT and (found := verdict(name)) is not None:
                overrides[name] = found
        out.append(plan.with_overrides(overrides) if overrides else plan)
    return out


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
