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
from dataclasses import dataclass
from sys import intern
from typing import Any

from dualstack_operator.api.models import DriftReason
from dualstack_operator.core.decision import Decision, ServiceView, State

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class SliceView:
    service: str
    family: str  # IPv4 or IPv6 (FQDN slices, and slices of no Service, are left out)
    ready: int  # endpoints that are ready (an unset condition counts as ready, as in the API)
    namespace: str = ""
    name: str = ""  # the EndpointSlice's own name

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SliceView | None:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        service = str(labels.get(SERVICE_NAME_LABEL) or "")
        family = str(body.get("addressType") or "")
        if not service or family not in ("IPv4", "IPv6"):
            return None
        ready = sum(
            1
            for e in body.get("endpoints") or []
            if e.get("addresses") and (e.get("conditions") or {}).get("ready") is not False
        )
        return cls(
            intern(service),
            intern(family),
            ready,
            intern(str(meta.get("namespace", ""))),
            str(meta.get("name", "")),
        )

    @classmethod
    def placeholder(cls, body: Mapping[str, Any]) -> SliceView:
        """A slice that counts for no Service, kept so that its deletion is known."""
        meta = body.get("metadata") or {}
        return cls("", "", 0, intern(str(meta.get("namespace", ""))), str(meta.get("name", "")))


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
