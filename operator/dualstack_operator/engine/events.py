"""Events as the engine posts them: best effort, through the shared write gate."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from dualstack_operator.api import names
from dualstack_operator.api.models import DriftReason
from dualstack_operator.api.reasons import Reason
from dualstack_operator.core.decision import State
from dualstack_operator.core.errors import ApiError
from dualstack_operator.core.plan import PolicyPlan
from dualstack_operator.core.readiness import READINESS_REASONS
from dualstack_operator.core.views import PolicyView
from dualstack_operator.engine.ports import EventSink
from dualstack_operator.engine.throttle import Throttle

log = logging.getLogger("dualstack_operator.engine.events")


def ref(kind: str, api_version: str, namespace: str, name: str, uid: str = "") -> dict[str, str]:
    """An Event's involvedObject."""
    out = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    if uid:
        out["uid"] = uid
    return out


def policy_ref(policy: PolicyView) -> dict[str, str]:
    return ref(policy.kind, names.API_VERSION, policy.namespace, policy.name, policy.uid)


def service_ref(namespace: str, name: str, uid: str = "") -> dict[str, str]:
    return ref("Service", "v1", namespace, name, uid)


class Events:
    def __init__(self, sink: EventSink, throttle: Throttle) -> None:
        self.sink = sink
        self.throttle = throttle

    async def post(self, involved: dict[str, str], type: str, reason: Reason, message: str) -> None:
        """Posts one Event; a failure is logged, not retried, but slows the writes too.
        The reason is one of the named ones (docs/reference/reasons.md lists them)."""
        try:
            async with self.throttle.slot():
                await self.sink.post_event(involved, type, str(reason), message)
        except ApiError as err:
            if err.transient:
                self.throttle.failed(err)
            log.warning(
                "cannot post event %s on %s/%s: %s",
                reason,
                involved["kind"],
                involved["name"],
                err,
            )


class FindingEvents:
    """A Warning Event on a Service when a readiness finding appears or its message
    changes: once per change, not once per pass. What was said is kept by Service, for
    the Services that have a finding only; while another drift reason hides a finding
    (MissingEndpoints, say) it stays said, and after a restart what the policies' status
    already reports counts as said."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.said: dict[str, dict[str, tuple[str, str]]] = {}  # namespace -> name -> said

    async def report(self, namespace: str, plans: Iterable[PolicyPlan]) -> None:
        plans = list(plans)
        now: dict[str, tuple[DriftReason, str]] = {}
        hidden: set[str] = set()  # drifted for another reason: its finding is not known now
        for plan in plans:
            for name, d in plan.decisions.items():
                if d.reason is not None and d.reason in READINESS_REASONS:
                    now[name] = (d.reason, d.message)
                elif d.state == State.DRIFTED:
                    hidden.add(name)
        before = self.said.get(namespace)
        if before is None:
            before = {
                str(entry.get("service")): (str(entry.get("reason")), str(entry.get("message")))
                for plan in plans
                for entry in plan.policy.status.get("drift") or ()
                if entry.get("reason") in READINESS_REASONS
            }
        for name, (reason, message) in sorted(now.items()):
            if before.get(name) != (reason, message):
                await self.events.post(service_ref(namespace, name), "Warning", reason, message)
        said = {**{n: v for n, v in before.items() if n in hidden}, **now}
        if said:
            self.said[namespace] = said
        else:
            self.forget(namespace)  # (what the status says is read again next time)

    def forget(self, namespace: str) -> None:
        """A namespace no policy governs any more: nothing said there is kept."""
        self.said.pop(namespace, None)
