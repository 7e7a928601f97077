"""The engine without kopf or a server: reconciler, ledger, queue, gate and Service cache
driven through a recording fake API and an injected clock (milliseconds per test)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from dualstack_operator.core.errors import ApiError, Conflict, NotFound, TooManyRequests
from dualstack_operator.core.views import SliceView
from dualstack_operator.engine.peering import PeeringGate
from dualstack_operator.engine.reconciler import work
from dualstack_operator.engine.settings import CacheSettings, PeeringSettings, ReconcileSettings
from support.fakes import Engine, FakeApi, FakeClock, peer, start_engine, until

NS = "shop"


pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def status(api: FakeApi, namespace: str = NS) -> dict[str, Any]:
    return api.statuses(namespace)[-1].body


async def test_in_flight_write_is_not_repeated_and_status_waits_for_it(api: FakeApi) -> None:
    api.service(NS, "web")
    api.policy(NS, ipFamilyPolicy="PreferDualStack")
    engine = await start_engine(api)
    api.hold = True  # our write's event has not reached the cache yet
    await engine.reconcile(NS)
    await engine.reconcile(NS)
    assert len(api.patches("web")) == 1, "a pass before the write's event must not repeat it"
    assert api.statuses() == [], "no status while a write is on its way"

    api.release()
    written = api.objects[(NS, "web")]["metadata"]["resourceVersion"]
    await until("the write's event", lambda: _version(engine, "web") == written)
    await engine.reconcile(NS)
    await engine.reconcile(NS)
    assert len(api.patches()) == 1
    assert len(api.statuses()) == 1, "one status write once settled, none when unchanged"
    assert (status(api)["compliantServices"], status(api)["driftedServices"]) == (1, 0)
    # A policy healthy at its first status posts no event (its conditions say so).
    assert [e[1] for e in api.events] == ["Remediated"]
    await engine.stop()


def _version(engine: Engine, name: str) -> str | None:
    svc = engine.views.services.in_namespace(NS).get(name)
    return svc.resource_version if svc else None


async def test_rejected_patch_follows_the_backoff_schedule(api: FakeApi) -> None:
    api.service(NS, "web")
    api.policy(NS, ipFamilyPolicy="RequireDualStack")
    api.reject[(NS, "web")] = "RequireDualStack is not allowed here"
    engine = await start_engine(
        api, ReconcileSettings(coalesce_seconds=0, reject_backoff=(10.0, 30.0))
    )
    clock, rec = engine.clock, engine

    async def attempts_after(seconds: float) -> int:
        clock.advance(seconds)
        await rec.reconcile(NS)
        return len(api.patches("web"))

    assert await attempts_after(0) == 1
    assert engine.queue.scheduled(NS) == clock.now + 10.0, "the retry is queued"
    drift = status(api)["drift"]
    assert [(d["service"], d["reason"]) for d in drift] == [("web", "PatchRejected")]
    assert "RequireDualStack is not allowed here" in drift[0]["message"]
    assert await attempts_after(9.9) == 1, "inside the first 10 s: no retry"
    assert await attempts_after(0.1) == 2
    assert await attempts_after(29.9) == 1 + 1, "the second wait is 30 s"
    assert await attempts_after(0.1) == 3
    assert await attempts_after(30.0) == 4, "the schedule's last step repeats"
    warnings = [e for e in api.events if e[1] == "PatchRejected"]
    assert warnings == [("Warning", "PatchRejected", "web")], "one Warning, not one per try"
    assert engine.metrics.errors["service"] == 4

    # A Service changed by someone else is judged afresh at once, backoff or not.
    del api.reject[(NS, "web")]
    api.service(NS, "web", ipFamilyPolicy="SingleStack", labels={"edited": "yes"})
    fresh = api.objects[(NS, "web")]["metadata"]["resourceVersion"]
    await until("the edit's event", lambda: _version(engine, "web") == fresh)
    assert await attempts_after(0) == 5
    await engine.stop()


@pytest.mark.parametrize("error", [NotFound(404, "gone"), Conflict(409, "modified")])
async def test_not_found_and_conflict_wait_for_the_next_event(
    error: ApiError, api: FakeApi
) -> None:
    api.service(NS, "web")
    api.policy(NS, ipFamilyPolicy="PreferDualStack")
    api.fail[(NS, "web")] = [error]
    engine = await start_engine(api)
    await engine.reconcile(NS)
    assert len(api.patches("web")) == 1
    assert engine.metrics.errors["service"] == 0, "stale, not an error"
    assert status(api)["drift"][0]["reason"] == "MissingFamily", "not PatchRejected"
    assert engine.queue.scheduled(NS) is None, "no timer: the object's event brings the pass"
    await engine.reconcile(NS)
    assert len(api.patches("web")) == 2, "no backoff for a stale write"
    await engine.stop()


async def test_transient_error_is_retried_soon_without_a_status_write(api: FakeApi) -> None:
    api.service(NS, "web")
    api.policy(NS, ipFamilyPolicy="PreferDualStack")
    api.fail[(NS, "web")] = [ApiError(503, "the server is shutting down")]
    engine = await start_engine(api, ReconcileSettings(coalesce_seconds=0))
    await engine.reconcile(NS)
    assert api.statuses() == []
    assert engine.queue.scheduled(NS) == engine.clock.now + 1.0, "the first backoff step"
    assert engine.metrics.errors["service"] == 1
    await engine.stop()


async def test_a_429_halves_the_writes_in_flight_and_retries_after_retry_after(
    api: FakeApi,
) -> None:
    for i in range(40):
        api.service(NS, f"s{i:02}")
    api.policy(NS, ipFamilyPolicy="PreferDualStack")
    api.fail[(NS, "s00")] = [TooManyRequests(429, "too many requests", retry_after=3.0)]
    engine = await start_engine(api, ReconcileSettings(coalesce_seconds=0))
    throttle = engine.reconciler.throttle
    await engine.reconcile(NS)
    assert throttle.limit == 8, "concurrency halved"
    assert len(api.patches()) == 40, "the others go on, at the lower concurrency"
    assert engine.queue.scheduled(NS) == engine.clock.now + 3.0, "Retry-After honoured"
    assert throttle.limit == 8, "no growth before Retry-After has passed"
    engine.clock.advance(3.0)
    await engine.reconcile(NS)
    assert len(api.patches("s00")) == 2
    assert throttle.limit == 9, "and one more per success after it"
    await engine.stop()


async def test_a_failing_server_pauses_every_write_with_a_growing_backoff(api: FakeApi) -> None:
    for i in range(40):
        api.service(NS, f"s{i:02}")
    api.policy(NS, ipFamilyPolicy="PreferDualStack")
    api.fail[(NS, "s00")] = [ApiError(503, "unavailable"), ApiError(0, "refused")]
    engine = await start_engine(api, ReconcileSettings(coalesce_seconds=0))
    await engine.reconcile(NS)
    # s00 went first: its 503 paused the gate, and the writes not yet sent when
    # it came back were held, not sent into a failing server.
    assert len(api.patches()) < 40, "writes kept going after the 503"
    assert engine.queue.scheduled(NS) == engine.clock.now + 1.0
    assert engine.reconciler.throttle.paused() == 1.0
    engine.clock.advance(1.0)
    await engine.reconcile(NS)
    assert engine.reconciler.throttle.paused() == 2.0, "the backoff grows"
    engine.clock.advance(2.0)
    await engine.reconcile(NS)
    assert {w.name for w in api.patches()} == {f"s{i:02}" for i in range(40)}
    await engine.stop()


async def test_the_worker_writes_each_status_once_after_a_burst(api: FakeApi) -> None:
    for i in range(50):
        api.service(NS, f"s{i:02}")
    api.service("other", "x")
    api.policy(NS, ipFamilyPolicy="PreferDualStack")
    engine = await start_engine(api, ReconcileSettings(coalesce_seconds=0.01))
    gate = PeeringGate(None, (), api, lambda: None)
    engine.tasks.append(
        asyncio.create_task(work(engine.reconciler, engine.queue, gate, engine.views))
    )
    await until("all 50 compliant", lambda: bool(api.statuses()))
    assert status(api)["compliantServices"] == 50
    assert len(api.patches()) == 50, "one write per drifted Service"
    assert len(api.statuses()) == 1, "one status write, not one per Service event"
    assert {w.namespace for w in api.writes} == {NS}, "no policy: no writes"
    await engine.stop()


async def test_a_standby_replica_writes_nothing_until_it_takes_over(api: FakeApi) -> None:
    api.service(NS, "web")
    api.policy(NS, ipFamilyPolicy="PreferDualStack")
    now = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
    api.peers = [peer("me", 10, now), peer("rival", 20, now, lifetime=1)]
    engine = await start_engine(api)
    wall = [now]
    gate = PeeringGate(
        PeeringSettings("p", "me", 10, lifetime=1, check_seconds=0),
        (),
        api,
        lambda: engine.queue.mark_many(engine.views.policy_namespaces()),
        clock=FakeClock(),
        wallclock=lambda: wall[0],
    )
    engine.tasks.append(
        asyncio.create_task(work(engine.reconciler, engine.queue, gate, engine.views))
    )
    await until("the gate to be asked", lambda: api.peer_reads >= 1)
    assert gate.active is False
    assert api.writes == [], "a standby never writes"
    wall[0] = now + datetime.timedelta(seconds=2)  # the rival stopped renewing its lease
    engine.clock.advance(gate.standby_recheck_seconds)  # the standby's recheck falls due
    await until("the takeover's writes", lambda: bool(api.statuses()), within=10)
    assert gate.active is True
    assert len(api.patches("web")) == 1
    await engine.stop()


async def test_relist_after_410_applies_every_change_missed_meanwhile(api: FakeApi) -> None:
    api.service(NS, "keep")
    api.service(NS, "edit")
    api.service(NS, "gone")
    engine = await start_engine(api)
    marked: list[str] = []
    engine.cache.on_change = marked.append
    lists = api.lists
    api.hold = True  # these changes never reach the open watch ...
    api.service(NS, "edit", ipFamilyPolicy="PreferDualStack", labels={"v": "2"})
    api.delete(NS, "gone")
    api.service(NS, "new")
    api.compact()  # ... and the history that had them is compacted away
    api.drop_watches()
    await until("a relist", lambda: engine.cache.relists == 1)
    cached = engine.views.services.in_namespace(NS)
    assert sorted(cached) == ["edit", "keep", "new"]
    assert cached["edit"].labels == {"v": "2"}
    assert api.lists == lists + 1
    assert marked == [NS], "the namespace that changed is marked once"
    await engine.stop()


async def test_a_dropped_watch_resumes_from_the_last_version_seen(api: FakeApi) -> None:
    api.service(NS, "web")
    engine = await start_engine(api)
    api.service(NS, "web", labels={"a": "1"})
    api.bookmark()  # bookmarks move the version without an object
    await until(
        "the bookmark", lambda: api.watch_starts and _resumes_from(engine) == str(api.version)
    )
    lists = api.lists
    api.drop_watches()
    await until("a resumed watch", lambda: len(api.watch_starts) == 2)
    assert api.watch_starts[1] == str(api.version), "resumed after the bookmark"
    assert api.lists == lists, "no relist for a dropped connection"
    api.service(NS, "web", labels={"a": "2"})
    await until(
        "the change after the resume",
        lambda: engine.views.services.in_namespace(NS)["web"].labels == {"a": "2"},
    )
    await engine.stop()


def _resumes_from(engine: Engine) -> str | None:
    return engine.cache.resume_version(None)


async def test_watching_listed_namespaces_only(api: FakeApi) -> None:
    api.service("a", "x")
    api.service("b", "y")
    api.service("c", "z")
    engine = await start_engine(api, namespaces=("a", "b"))
    assert len(engine.views.services) == 2
    api.service("c", "late")
    api.service("a", "late")
    await until("a's new Service", lambda: "late" in engine.views.services.in_namespace("a"))
    assert engine.views.services.in_namespace("c") == {}
    await engine.stop()


async def test_a_server_that_ends_watches_at_once_is_not_hammered() -> None:
    class Closing(FakeApi):
        async def watch_services(  # ends at once: no events
            self, namespace: str | None, rv: str, seconds: int, silence: int
        ) -> Any:
            self.watch_starts.append(rv)
            await asyncio.sleep(0)  # a real request yields to the loop
            return
            yield  # an async generator that ends at once

    api = Closing()
    sleeps: list[float] = []
    engine = await start_engine(api, cache=CacheSettings(retry_seconds=(0.01, 0.02)))
    real_sleep = engine.cache.sleep

    async def recorded(seconds: float) -> None:
        sleeps.append(seconds)
        await real_sleep(seconds)

    engine.cache.sleep = recorded
    await until("a few quick watches", lambda: len(sleeps) >= 3)
    assert sleeps[-3:] == [0.02, 0.02, 0.02], "backs off to the last step"
    assert len(api.watch_starts) <= len(sleeps) + 2, "every quick watch is followed by a wait"
    await engine.stop()


async def test_a_dual_stack_service_without_ready_ipv6_endpoints_is_reported_not_patched(
    api: FakeApi,
) -> None:
    api.service(NS, "web", ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv4", "IPv6"])
    api.policy(NS, ipFamilyPolicy="PreferDualStack")
    api.set_slices(NS, [SliceView("web", "IPv4", 2), SliceView("web", "IPv6", 0)])
    engine = await start_engine(api)
    await engine.reconcile(NS)
    assert api.patches() == [], "never fixed by dropping the family"
    drift = status(api)["drift"]
    assert [d["reason"] for d in drift] == ["MissingEndpoints"]
    assert "no ready IPv6 endpoint while IPv4 has 2" in drift[0]["message"]
    assert engine.views.slices is not None
    slices = engine.views.slices
    seen = slices.generation(NS)
    api.set_slices(NS, [SliceView("web", "IPv4", 2), SliceView("web", "IPv6", 1)])
    await until("the slices' events", lambda: slices.generation(NS) > seen)
    await engine.reconcile(NS)
    assert status(api)["compliantServices"] == 1
    await engine.stop()


async def test_a_settled_namespace_is_not_planned_again_until_something_it_reads_changes(
    monkeypatch: pytest.MonkeyPatch, api: FakeApi
) -> None:
    """A resync over a quiet cluster costs a comparison per namespace, not a plan; a
    pass after one Service changed decides that Service again, not its neighbours."""
    from dualstack_operator.core import decision as module

    decided: list[str] = []
    original = module.decide

    def counting(spec: Any, svc: Any, cluster: Any) -> Any:
        decided.append(svc.name)
        return original(spec, svc, cluster)

    monkeypatch.setattr("dualstack_operator.core.plan.decide", counting)

    for name in ("web", "api"):
        api.service(NS, name, ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv4", "IPv6"])
    api.policy(NS, ipFamilyPolicy="PreferDualStack")
    engine = await start_engine(api)
    rec = engine
    await rec.reconcile(NS)
    assert status(api)["compliantServices"] == 2
    await rec.reconcile(NS)  # the policy as its status write left it (a new object)
    decided.clear()
    for _ in range(3):
        await rec.reconcile(NS)
    assert decided == [], "nothing changed: nothing decided"
    version = _version(engine, "web")
    api.service(NS, "web")  # someone makes it single-stack again
    await until("the change's event", lambda: _version(engine, "web") != version)
    await rec.reconcile(NS)
    assert decided == ["web"], "only the Service that changed"
    assert len(api.patches("web")) == 1, "the change is acted on"
    await engine.stop()


async def test_the_worker_retries_when_the_engine_clock_reaches_the_backoff(api: FakeApi) -> None:
    """The queue's delayed marks run on the injected clock: no retry before the backoff's
    10 s have passed on it, one as soon as they have (no real waiting)."""
    api.service(NS, "web")
    api.policy(NS, ipFamilyPolicy="RequireDualStack")
    api.reject[(NS, "web")] = "RequireDualStack is not allowed here"
    engine = await start_engine(
        api, ReconcileSettings(coalesce_seconds=0, reject_backoff=(10.0, 30.0))
    )
    gate = PeeringGate(None, (), api, lambda: None)
    engine.tasks.append(
        asyncio.create_task(work(engine.reconciler, engine.queue, gate, engine.views))
    )
    await until("the first attempt", lambda: len(api.patches("web")) == 1)
    await until("the retry to be queued", lambda: engine.queue.scheduled(NS) is not None)
    assert engine.queue.scheduled(NS) == engine.clock.now + 10.0
    engine.clock.advance(9.9)
    assert engine.queue.scheduled(NS) is not None, "not due yet: still pending"
    engine.clock.advance(0.1)
    await until("the retry", lambda: len(api.patches("web")) == 2)
    await engine.stop()
