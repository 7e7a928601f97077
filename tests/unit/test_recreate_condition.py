"""RecreateAvailable: a policy asking for primaryFamilyChange: Recreate says whether it can
work here (pure; the operator's side is in test_recreate and test_deploy)."""

from __future__ import annotations

from typing import Any

from dualstack_operator.api.models import IPFamily
from dualstack_operator.core.plan import PolicyPlan
from dualstack_operator.core.recreation import Unavailable
from dualstack_operator.core.status import build_status, status_differs
from dualstack_operator.core.views import PolicyView
from support.views import policy_view

DUAL = [IPFamily.IPV4, IPFamily.IPV6]
MISSING = Unavailable("MissingRights", "the operator may not delete services")


def policy(**spec: Any) -> PolicyView:
    return policy_view(generation=3, ipFamilyPolicy="RequireDualStack", **spec)


def conditions(plan: PolicyPlan) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in build_status(plan, DUAL)["conditions"]}


def test_blocked_recreation_is_a_false_condition_naming_what_is_missing() -> None:
    plan = PolicyPlan(policy(primaryFamilyChange="Recreate")).blocked(MISSING)
    got = conditions(plan.with_overrides({}))["RecreateAvailable"]
    assert (got["status"], got["reason"], got["message"]) == (
        "False",
        "MissingRights",
        "the operator may not delete services",
    )
    assert got["observedGeneration"] == 3


def test_available_recreation_is_a_true_condition() -> None:
    got = conditions(PolicyPlan(policy(primaryFamilyChange="Recreate")))["RecreateAvailable"]
    assert (got["status"], got["reason"]) == ("True", "Available")


def test_no_condition_for_policies_that_do_not_recreate() -> None:
    assert "RecreateAvailable" not in conditions(PolicyPlan(policy()))
    audit = policy(primaryFamilyChange="Recreate", mode="Audit")
    assert "RecreateAvailable" not in conditions(PolicyPlan(audit).blocked(MISSING))


def test_the_condition_changing_is_a_status_write() -> None:
    view = policy(primaryFamilyChange="Recreate")
    granted = build_status(PolicyPlan(view), DUAL)
    blocked = build_status(PolicyPlan(view).blocked(MISSING), DUAL)
    assert status_differs(granted, blocked)
