"""FindingEvents: a readiness finding is one Warning Event on its Service, however many
passes see it, while another drift hides it, and after a restart."""

from __future__ import annotations

import dataclasses
from typing import Any

from dualstack_operator.api.models import DriftReason
from dualstack_operator.core.decision import COMPLIANT, Decision, State
from dualstack_operator.core.plan import PolicyPlan
from dualstack_operator.engine.events import Events, FindingEvents
from dualstack_operator.engine.throttle import Throttle
from support.views import policy_view

FINDING = Decision(State.DRIFTED, DriftReason.EXTERNAL_IPS_ONE_FAMILY, "externalIPs are IPv4 only")
HIDDEN = Decision(State.DRIFTED, DriftReason.MISSING_ENDPOINTS, "no ready IPv6 endpoint")


class Sink:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    async def post_event(
        self, involved: dict[str, str], type: str, reason: str, message: str
    ) -> None:
        self.posted.append((involved["name"], type, reason))


def plans(decision: Decision, status: dict[str, Any] | None = None) -> list[PolicyPlan]:
    policy = policy_view("default", "shop")
    if status is not None:
        policy = dataclasses.replace(policy, status=status)
    return [PolicyPlan(policy, {"web": decision})]


async def test_once_per_change_not_per_pass_nor_while_hidden() -> None:
    sink = Sink()
    events = FindingEvents(Events(sink, Throttle(4)))
    for decision in (FINDING, FINDING, HIDDEN, FINDING, HIDDEN, FINDING):
        await events.report("shop", plans(decision))
    assert sink.posted == [("web", "Warning", "ExternalIPsOneFamily")]
    await events.report("shop", plans(COMPLIANT))  # fixed: forgotten, said again if back
    await events.report("shop", plans(FINDING))
    assert len(sink.posted) == 2
    changed = Decision(State.DRIFTED, DriftReason.EXTERNAL_IPS_ONE_FAMILY, "another message")
    await events.report("shop", plans(changed))
    assert len(sink.posted) == 3
    events.forget("shop")
    assert events.said == {}


async def test_what_the_status_already_reports_is_not_said_again_after_a_restart() -> None:
    sink = Sink()
    entry = {"service": "web", "reason": "ExternalIPsOneFamily", "message": FINDING.message}
    await FindingEvents(Events(sink, Throttle(4))).report(
        "shop", plans(FINDING, {"drift": [entry]})
    )
    assert sink.posted == []
    await FindingEvents(Events(sink, Throttle(4))).report("shop", plans(FINDING, {}))
    assert sink.posted == [("web", "Warning", "ExternalIPsOneFamily")]
