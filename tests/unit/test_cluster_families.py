"""The cluster's families follow the ServiceCIDR watch, but only once the API server serves
what the range declares (a conversion patches the range before the server's flags)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dualstack_operator.api.models import IPFamily
from dualstack_operator.core.errors import Forbidden
from dualstack_operator.core.views import CidrView, Page, WatchEvent
from dualstack_operator.engine import cache
from dualstack_operator.engine.cache import ClusterFamilies, Reflector
from dualstack_operator.engine.settings import CacheSettings

V4, V6 = IPFamily.IPV4, IPFamily.IPV6


class Source:
    """The API server's answers: the ServiceCIDR by GET, and the dry-run probe's, in turn."""

    def __init__(self, declared: list[IPFamily], *served: list[IPFamily] | Exception) -> None:
        self.declared = declared
        self.served = list(served)
        self.probes = 0

    async def service_cidr_families(self) -> list[IPFamily] | None:
        return self.declared

    async def probe_families(self) -> list[IPFamily]:
        self.probes += 1
        answer = self.served.pop(0) if len(self.served) > 1 else self.served[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _no_page(scope: str | None, limit: int, token: str | None) -> Page[CidrView]:
    raise AssertionError("not listed here")


async def _no_watch(
    scope: str | None, version: str, seconds: int, silence: int
) -> AsyncIterator[WatchEvent[CidrView]]:
    raise AssertionError("not watched here")
    yield  # pragma: no cover


def watched(*cidrs: str) -> Reflector[CidrView]:
    """A synced ServiceCIDR reflector holding the default range."""
    reflector: Reflector[CidrView] = Reflector(
        _no_page, _no_watch, CacheSettings(), (), lambda _: None
    )
    reflector._items[""] = {"kubernetes": CidrView("kubernetes", cidrs)}
    reflector.synced.set()
    return reflector


async def run_until_changed(families: ClusterFamilies, source: Source, interval: float) -> None:
    changed = asyncio.Event()
    task = asyncio.create_task(families.keep_checking(source, interval, changed.set))
    try:
        families.nudge()
        await asyncio.wait_for(changed.wait(), 5)
    finally:
        task.cancel()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "QUICK_RECHECK_SECONDS", 0.01)


async def test_a_patched_range_counts_once_the_api_server_serves_it() -> None:
    families = ClusterFamilies([V4], watched("10.96.0.0/16", "fd00:10:96::/112"))
    source = Source([V4, V6], [V4], [V4], [V4, V6])  # the API server restarts meanwhile
    await run_until_changed(families, source, interval=3600)  # no poll: the watch tells
    assert families.families == [V4, V6]
    assert source.probes == 3, "not moved before the server served IPv6"


async def test_a_range_the_probe_cannot_check_is_taken_as_declared() -> None:
    families = ClusterFamilies([V4], watched("10.96.0.0/16", "fd00:10:96::/112"))
    source = Source([V4, V6], Forbidden(403, "no create on services"))
    await run_until_changed(families, source, interval=3600)
    assert families.families == [V4, V6]


async def test_without_the_watch_the_families_are_polled() -> None:
    families = ClusterFamilies([V4])
    source = Source([V4, V6], [V4, V6])
    await run_until_changed(families, source, interval=0.01)
    assert families.families == [V4, V6]
    assert source.probes == 1, "the ServiceCIDR's answer, checked against the API server"


async def test_at_start_mid_conversion_the_probe_says_what_is_served() -> None:
    families = ClusterFamilies()
    source = Source([V4, V6], [V4])  # the range is patched, the API server not restarted
    assert await families.refresh(source)
    assert families.families == [V4]
    assert not await families.refresh(source), "what is known stays until it is served"
    source.served = [[V4, V6]]
    assert await families.refresh(source)
    assert families.families == [V4, V6]


async def test_a_watch_without_the_default_range_falls_back_to_asking() -> None:
    reflector = watched("10.96.0.0/16")
    reflector._items[""] = {}  # the API is served, but `kubernetes` is not there
    families = ClusterFamilies([V4], reflector)
    source = Source([V4, V6], [V4, V6])
    await run_until_changed(families, source, interval=0.01)
    assert families.families == [V4, V6]
