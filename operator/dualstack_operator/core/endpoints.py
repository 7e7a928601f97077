"""Whether a dual-stack Service can be reached over both of its families (pure).

A Service with two ClusterIPs is only as dual-stack as its backends: when its
EndpointSlices hold ready endpoints of one family and none of the other, clients
connecting over the other family are refused, although the Service itself matches
its policy. That is reported as ``MissingEndpoints``; the operator never "fixes" it
by dropping the family (the pods or their network lack it, not the Service).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from dualstack_operator.api.models import DriftReason
from dualstack_operator.core.decision import Decision, State
from dualstack_operator.core.plan import PolicyPlan, override_compliant
from dualstack_operator.core.views import ServiceView, SliceView


def ready_by_service(slices: Iterable[SliceView]) -> dict[str, dict[str, int]]:
    """Service name -> family -> ready endpoints, over all of its slices."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in slices:
        if s.service:
            out[s.service][s.family] += s.ready
    return {name: dict(families) for name, families in out.items()}


def missing_endpoints(svc: ServiceView, ready: Mapping[str, int]) -> Decision | None:
    """``MissingEndpoints`` when one of a dual-stack Service's families has no ready
    endpoint while the other has some; None otherwise (no endpoints at all is not a
    dual-stack problem, and single-stack Services have one family to serve)."""
    if len(svc.ip_families) < 2:
        return None
    empty = [f for f in svc.ip_families if ready.get(f, 0) == 0]
    served = [f for f in svc.ip_families if ready.get(f, 0) > 0]
    if len(empty) != 1 or not served:
        return None
    gone, have = empty[0], served[0]
    message = (
        f"no ready {gone} endpoint while {have} has {ready[have]}: clients that reach the "
        f"Service at its {gone} ClusterIP are refused. Its pods have no {gone} address "
        f"(single-stack pods, or a node or pod network without {gone}); the family is "
        "kept, not dropped"
    )
    return Decision(State.DRIFTED, DriftReason.MISSING_ENDPOINTS, message)


def with_missing_endpoints(
    plans: list[PolicyPlan], services: Mapping[str, ServiceView], slices: Iterable[SliceView]
) -> list[PolicyPlan]:
    """The plans with ``MissingEndpoints`` for compliant dual-stack Services whose
    EndpointSlices serve only one family."""
    candidates = [
        name
        for plan in plans
        for name, decision in plan.decisions.items()
        if decision.state == State.COMPLIANT and len(services[name].ip_families) == 2
    ]
    if not candidates:
        return plans
    ready = ready_by_service(slices)
    return override_compliant(
        plans, lambda name: missing_endpoints(services[name], ready.get(name, {}))
    )
