"""The shared write gate: never more than its limit in flight, first come first served.
(That a write's cost does not grow with the number waiting is measured by `make bench`.)"""

from __future__ import annotations

import asyncio

from dualstack_operator.core.errors import TooManyRequests
from dualstack_operator.engine.throttle import Throttle


async def test_at_most_the_limit_in_flight_and_in_arrival_order() -> None:
    gate = Throttle(3)
    started: list[int] = []
    peak = 0
    release = asyncio.Event()

    async def write(i: int) -> None:
        nonlocal peak
        async with gate.slot():
            started.append(i)
            peak = max(peak, gate.in_flight)
            await release.wait()

    tasks = [asyncio.create_task(write(i)) for i in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == [0, 1, 2]
    release.set()
    await asyncio.gather(*tasks)
    assert started == list(range(10)), "first come, first served"
    assert peak == 3
    assert gate.in_flight == 0


async def test_a_waiter_cancelled_passes_its_slot_on() -> None:
    gate = Throttle(1)
    hold = asyncio.Event()
    done: list[str] = []

    async def write(name: str) -> None:
        async with gate.slot():
            await hold.wait()
            done.append(name)

    first = asyncio.create_task(write("first"))
    second = asyncio.create_task(write("second"))
    third = asyncio.create_task(write("third"))
    await asyncio.sleep(0)
    second.cancel()
    hold.set()
    await asyncio.gather(first, third)
    assert second.cancelled()
    assert done == ["first", "third"]
    assert gate.in_flight == 0


async def test_a_grown_limit_admits_a_waiter_at_once() -> None:
    gate = Throttle(4)
    gate.failed(TooManyRequests(429, "throttled", 0.0))  # halved to 2
    hold = asyncio.Event()
    entered = 0

    async def write() -> None:
        nonlocal entered
        async with gate.slot():
            entered += 1
            await hold.wait()

    tasks = [asyncio.create_task(write()) for _ in range(4)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert entered == 2
    gate.succeeded()  # the limit grows by one: one more goes in without a release
    for _ in range(3):
        await asyncio.sleep(0)
    assert entered == 3
    hold.set()
    await asyncio.gather(*tasks)
