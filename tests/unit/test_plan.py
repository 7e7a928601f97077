"""Namespace planning and status building (pure)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dualstack_operator.core.plan import Planner, plan_namespace
from dualstack_operator.core.status import build_status, status_differs
from dualstack_operator.core.views import PolicyView, ServiceView
from support.decision_cases import DUAL, V4, V6, svc

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def pol(name: str, created: str, status: dict[str, Any] | None = None, **spec: Any) -> PolicyView:
    return PolicyView.from_body(
        {
            "metadata": {
                "namespace": "ns",
                "name": name,
                "uid": "u",
                "generation": 3,
                "creationTimestamp": created,
            },
            "spec": spec,
            "status": status or {},
        }
    )


def named(name: str, view: ServiceView, **labels: str) -> ServiceView:
    return dataclasses.replace(view, name=name, labels=labels)


def test_oldest_policy_wins_then_name() -> None:
    services = [named("web", svc(), tier="web"), named("db", svc())]
    plans = plan_namespace(
        [
            pol("b", "2026-01-01T00:00:00Z", ipFamilyPolicy="SingleStack"),
            pol(
                "z",
                "2025-12-31T00:00:00Z",
                ipFamilyPolicy="PreferDualStack",
                serviceSelector={"matchLabels": {"tier": "web"}},
            ),
            pol("a", "2026-01-01T00:00:00Z", ipFamilyPolicy="RequireDualStack"),
        ],
        services,
        [V4, V6],
    )
    by_name = {p.policy.name: p for p in plans}
    assert [p.policy.name for p in plans] == ["z", "a", "b"]
    assert set(by_name["z"].decisions) == {"web"}
    assert by_name["a"].decisions["web"].reason == "Conflict"
    assert by_name["a"].decisions["db"].reason == "MissingFamily"
    assert {d.reason for d in by_name["b"].decisions.values()} == {"Conflict"}


def test_status_counts_drift_list_and_conditions() -> None:
    services = [named(f"s{i:02}", svc()) for i in range(60)]
    services += [
        named("ext", svc(type="ExternalName")),
        named("ok", svc(("IPv4", "IPv6"), "PreferDualStack")),
    ]
    (plan,) = plan_namespace(
        [pol("p", "2026-01-01T00:00:00Z", ipFamilyPolicy="PreferDualStack")], services, [V4, V6]
    )
    status = build_status(plan, [V4, V6], now=T0)
    assert (
        status["matchedServices"],
        status["compliantServices"],
        status["driftedServices"],
        status["excludedServices"],
    ) == (61, 1, 60, 1)
    assert len(status["drift"]) == 50, "bounded"
    assert status["drift"][0]["service"] == "s00"
    assert status["observedGeneration"] == 3
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["Compliant"]["message"] == "60 of 61 Services drifted"
    assert cond["Compliant"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_transition_time_moves_only_when_status_flips_and_unchanged_status_is_not_rewritten() -> (
    None
):
    services = [named("ok", svc(("IPv4", "IPv6"), "PreferDualStack"))]
    first = build_status(
        plan_namespace([pol("p", "x", ipFamilyPolicy="PreferDualStack")], services, [V4, V6])[0],
        [V4, V6],
        now=T0,
    )
    later = T0 + datetime.timedelta(hours=1)
    again = build_status(
        plan_namespace(
            [pol("p", "x", first, ipFamilyPolicy="PreferDualStack")], services, [V4, V6]
        )[0],
        [V4, V6],
        now=later,
    )
    assert again == first
    assert not status_differs(first, again)
    drifted = build_status(
        plan_namespace([pol("p", "x", first, ipFamilyPolicy="SingleStack")], services, [V4, V6])[0],
        [V4, V6],
        now=later,
    )
    assert status_differs(first, drifted)
    cond = {c["type"]: c for c in drifted["conditions"]}
    assert cond["Compliant"]["lastTransitionTime"] == "2026-01-01T01:00:00Z"
    assert cond["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_invalid_stored_spec_is_reported_not_crashed() -> None:
    bad = pol("p", "x", ipFamilyPolicy="Sometimes")
    (plan,) = plan_namespace([bad], [named("web", svc())], [V4, V6])
    assert plan.decisions == {}
    status = build_status(plan, [V4, V6], now=T0)
    (ready,) = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "InvalidSpec")


SHAPES = [
    svc(),
    svc(("IPv4", "IPv6"), "PreferDualStack"),
    svc(("IPv6",)),
    svc(("IPv6", "IPv4"), "RequireDualStack", headless=True),
]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),
            st.one_of(st.none(), st.integers(0, len(SHAPES) - 1)),  # None: deleted
            st.sampled_from([{}, {"tier": "web"}]),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_the_planner_answers_as_planning_afresh(
    changes: list[tuple[str, int | None, dict[str, str]]], policy_changes: bool
) -> None:
    """After any sequence of Service changes (and a policy change), the kept plan is the
    one ``plan_namespace`` makes from the same inputs."""
    policies = [
        pol("old", "2026-01-01T00:00:00Z", ipFamilyPolicy="PreferDualStack"),
        pol(
            "web",
            "2026-01-02T00:00:00Z",
            ipFamilyPolicy="RequireDualStack",
            ipFamilies=["IPv6", "IPv4"],
            serviceSelector={"matchLabels": {"tier": "web"}},
        ),
    ]
    planner = Planner()
    services: dict[str, ServiceView] = {}
    for step, (name, shape, labels) in enumerate(changes):
        if shape is None:
            services.pop(name, None)
        else:
            services[name] = named(name, SHAPES[shape], **labels)
        if policy_changes and step == len(changes) // 2:
            policies = policies[::-1] if step % 2 else [policies[1]]
        got = planner.plan("ns", policies, services, DUAL)
        want = plan_namespace(policies, services.values(), DUAL)
        assert [(p.policy.name, p.decisions) for p in got] == [
            (p.policy.name, p.decisions) for p in want
        ]
