"""The work queue: bursts coalesce into one batch, the resync covers everything, a
delayed mark keeps the earliest due time."""

from __future__ import annotations

import asyncio

from dualstack_operator.engine.queue import WorkQueue
from support.fakes import FakeClock


async def test_a_burst_of_marks_is_one_batch() -> None:
    queue = WorkQueue(coalesce_seconds=0.05, resync_seconds=3600)
    queue.mark("a")
    got = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # the getter is now inside its coalescing window
    queue.mark_many(["b", "a", "c"])  # arrives during the window: same batch
    batch = await asyncio.wait_for(got, timeout=5)
    assert batch.namespaces == {"a", "b", "c"}
    assert batch.resync is False
    assert len(queue) == 0


async def test_the_resync_batch_is_flagged_even_without_marks() -> None:
    clock = FakeClock()
    queue = WorkQueue(coalesce_seconds=0, resync_seconds=300, clock=clock)
    clock.advance(300)
    batch = await asyncio.wait_for(queue.get(), timeout=5)
    assert (batch.namespaces, batch.resync) == (frozenset(), True)
    queue.mark("a")
    batch = await asyncio.wait_for(queue.get(), timeout=5)
    assert (batch.namespaces, batch.resync) == (frozenset({"a"}), False), "the timer restarted"


async def test_requeue_after_keeps_the_earliest_and_fires() -> None:
    clock = FakeClock()
    queue = WorkQueue(coalesce_seconds=0, resync_seconds=3600, clock=clock)
    queue.requeue_after("a", 30)
    queue.requeue_after("a", 0.01)
    queue.requeue_after("a", 60)
    assert queue.scheduled("a") == clock.now + 0.01
    clock.advance(0.01)  # the queue's timer runs on its clock
    batch = await asyncio.wait_for(queue.get(), timeout=5)
    assert batch.namespaces == {"a"}
    assert queue.scheduled("a") is None
    queue.close()
