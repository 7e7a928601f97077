"""The scrape-time collector and the secure-metrics cache, without a server (the real
Prometheus scrapes them in test_monitoring)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dualstack_operator.api.models import DriftReason, IPFamily
from dualstack_operator.core.errors import ApiError
from dualstack_operator.core.plan import Summary
from dualstack_operator.core.views import PolicyView, UserInfo
from dualstack_operator.observability.metrics import Metrics
from dualstack_operator.observability.metrics_auth import MetricsAuth
from support.fakes import FakeClock
from support.views import policy_view


def policy(namespace: str, name: str, **spec: Any) -> PolicyView:
    return policy_view(name, namespace, **spec)


@dataclass
class State:
    listed: list[PolicyView]
    summaries: dict[tuple[str, str], Summary] = field(default_factory=dict)
    families: list[IPFamily] = field(default_factory=lambda: [IPFamily.IPV4])
    dns: list[str] | None = None

    def policies(self) -> Iterable[PolicyView]:
        return self.listed

    def summary(self, namespace: str, name: str) -> Summary | None:
        return self.summaries.get((namespace, name))

    def cluster_families(self) -> list[IPFamily]:
        return self.families

    def cluster_dns_families(self) -> list[str] | None:
        return self.dns


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("dualstack_")
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def test_gauges_are_what_the_last_pass_concluded() -> None:
    shop = policy("shop", "p", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"])
    state = State([shop])
    state.summaries[("shop", "p")] = Summary(3, 2, 1, {DriftReason.MISSING_FAMILY: 2})
    metrics = Metrics()
    metrics.bind(state)
    found = samples(metrics)
    for state_, count in (("compliant", 3), ("drifted", 2), ("excluded", 1)):
        assert value(found, "dualstack_services", namespace="shop", policy="p", state=state_) == (
            count
        )
    assert (
        value(
            found, "dualstack_service_drift", namespace="shop", policy="p", reason="MissingFamily"
        )
        == 2
    )
    assert (
        value(found, "dualstack_service_drift", namespace="shop", policy="p", reason="ExtraFamily")
        == 0
    ), "every reason present, zero included: no gaps in a graph"
    assert (
        value(
            found,
            "dualstack_policy_info",
            namespace="shop",
            policy="p",
            ip_family_policy="RequireDualStack",
            ip_families="IPv6,IPv4",
            mode="Enforce",
        )
        == 1
    )
    assert value(found, "dualstack_cluster_ip_families", family="IPv4") == 1
    assert value(found, "dualstack_cluster_ip_families", family="IPv6") == 0


def test_a_policy_not_reconciled_yet_has_no_numbers_rather_than_wrong_ones() -> None:
    metrics = Metrics()
    metrics.bind(State([policy("shop", "p", ipFamilyPolicy="PreferDualStack")]))
    found = samples(metrics)
    assert not [k for k in found if k[0] == "dualstack_services"]
    assert (
        value(
            found,
            "dualstack_policy_info",
            namespace="shop",
            policy="p",
            ip_family_policy="PreferDualStack",
            ip_families="",
            mode="Enforce",
        )
        == 1
    )


def test_counters_count_and_go_with_their_policy() -> None:
    state = State([policy("shop", "p", ipFamilyPolicy="PreferDualStack")])
    metrics = Metrics()
    metrics.bind(state)
    metrics.remediated("shop", "p", ok=True)
    metrics.remediated("shop", "p", ok=True)
    metrics.remediated("shop", "p", ok=False)
    metrics.reverted("shop", "p")
    metrics.error("service")
    found = samples(metrics)
    remediations = "dualstack_remediations_total"
    assert value(found, remediations, namespace="shop", policy="p", result="success") == 2
    assert value(found, remediations, namespace="shop", policy="p", result="error") == 1
    assert value(found, "dualstack_reverts_total", namespace="shop", policy="p") == 1
    assert value(found, "dualstack_reconcile_errors_total", kind="service") == 1
    assert value(found, "dualstack_reconcile_errors_total", kind="admission") == 0
    state.listed = []  # the policy was deleted
    found = samples(metrics)
    assert not [k for k in found if k[0] == remediations], "its series went with it"
    assert metrics.remediations == {}, "and so did the memory they held"


def test_recreations_say_whether_the_surviving_address_was_kept() -> None:
    state = State([policy("shop", "p", ipFamilyPolicy="RequireDualStack")])
    metrics = Metrics()
    metrics.bind(state)
    metrics.recreated("shop", "p", ok=True, addresses="kept")
    metrics.recreated("shop", "p", ok=True, addresses="new")
    metrics.recreated("shop", "p", ok=False, addresses="kept")  # an error keeps nothing
    found = samples(metrics)
    name = "dualstack_recreations_total"
    got = {
        (labels["result"], labels["addresses"]): v
        for (sample, key), v in found.items()
        if sample == name and (labels := dict(key))["policy"] == "p"
    }
    assert got == {
        ("success", "kept"): 1,
        ("success", "new"): 1,
        ("success", "none"): 0,
        ("error", "none"): 1,
    }


def test_no_label_ever_names_a_service() -> None:
    state = State([policy("shop", "p", ipFamilyPolicy="PreferDualStack")])
    state.summaries[("shop", "p")] = Summary(1, 0, 0, {})
    metrics = Metrics()
    metrics.bind(state)
    labels = {name for key in samples(metrics) for name, _ in key[1]}
    assert labels <= {
        "namespace",
        "policy",
        "state",
        "reason",
        "result",
        "addresses",
        "kind",
        "family",
        "ip_family_policy",
        "ip_families",
        "mode",
        "le",
    }


@dataclass
class Reviewer:
    users: dict[str, UserInfo]
    allowed: set[str]
    reviews: int = 0
    checks: int = 0
    down: bool = False

    async def review_token(self, token: str) -> UserInfo | None:
        self.reviews += 1
        if self.down:
            raise ApiError(0, "connection refused")
        return self.users.get(token)

    async def may_get(self, user: UserInfo, path: str) -> bool:
        self.checks += 1
        return user.username in self.allowed


PROM = UserInfo("system:serviceaccount:monitoring:prometheus")
EVE = UserInfo("eve")


@pytest.fixture
def reviewer() -> Reviewer:
    return Reviewer({"prom-token": PROM, "eve-token": EVE}, {PROM.username})


async def test_verdicts(reviewer: Reviewer) -> None:
    auth = MetricsAuth(reviewer)
    assert (await auth.check(None, "/metrics")).status == 401
    assert (await auth.check("Basic abc", "/metrics")).status == 401
    assert (await auth.check("Bearer ", "/metrics")).status == 401
    assert (await auth.check("Bearer nobody", "/metrics")).status == 401
    assert (await auth.check("Bearer eve-token", "/metrics")).status == 403
    assert (await auth.check("Bearer prom-token", "/metrics")).status == 200
    assert reviewer.reviews == 3, "no review without a bearer token"


async def test_a_verdict_is_cached_for_its_ttl_then_asked_again(reviewer: Reviewer) -> None:
    clock = FakeClock()
    auth = MetricsAuth(reviewer, ttl=60, clock=clock)
    for _ in range(5):
        assert (await auth.check("Bearer prom-token", "/metrics")).status == 200
    assert (reviewer.reviews, reviewer.checks) == (1, 1), "one review for five scrapes"
    clock.advance(59.9)
    await auth.check("Bearer prom-token", "/metrics")
    assert reviewer.reviews == 1
    clock.advance(0.2)
    await auth.check("Bearer prom-token", "/metrics")
    assert reviewer.reviews == 2, "expired: asked again (a revoked token stops working)"


async def test_the_cache_is_per_token_and_path(reviewer: Reviewer) -> None:
    auth = MetricsAuth(reviewer)
    await auth.check("Bearer prom-token", "/metrics")
    await auth.check("Bearer prom-token", "/other")
    await auth.check("Bearer eve-token", "/metrics")
    assert reviewer.reviews == 3


async def test_a_failure_to_ask_is_raised_and_not_cached(reviewer: Reviewer) -> None:
    auth = MetricsAuth(reviewer)
    reviewer.down = True
    with pytest.raises(ApiError):
        await auth.check("Bearer prom-token", "/metrics")
    reviewer.down = False
    assert (await auth.check("Bearer prom-token", "/metrics")).status == 200


async def test_a_flood_of_tokens_does_not_grow_the_cache_without_bound(
    reviewer: Reviewer,
) -> None:
    clock = FakeClock()
    auth = MetricsAuth(reviewer, ttl=1, clock=clock)
    for i in range(3000):
        if i % 1000 == 0:
            clock.advance(2)  # the earlier ones expired
        await auth.check(f"Bearer junk-{i}", "/metrics")
    assert len(auth._cache) <= 1001 + 1


def test_the_cluster_dns_families_are_a_gauge_only_where_watched() -> None:
    state = State([], families=[IPFamily.IPV4, IPFamily.IPV6], dns=["IPv4"])
    metrics = Metrics()
    metrics.bind(state)
    found = samples(metrics)
    assert value(found, "dualstack_cluster_dns_ip_families", family="IPv4") == 1
    assert value(found, "dualstack_cluster_dns_ip_families", family="IPv6") == 0
    state.dns = None
    assert not [k for k in samples(metrics) if k[0] == "dualstack_cluster_dns_ip_families"]
