"""Dirty namespaces: marked by events, coalesced into batches, resynced on a timer.

Level-based: a mark says only "look at this namespace again"; the pass recomputes
everything from the cache, so marks can be merged, repeated or delayed freely.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from dualstack_operator.engine.clock import Clock, LoopClock, Timer


@dataclass(frozen=True)
class Result:
    """What a pass asks of the queue (controller-runtime's ``Result``): to look at its
    namespace again after ``requeue_after`` seconds; None: only when something changes."""

    requeue_after: float | None = None

    def merge(self, other: Result) -> Result:
        """The sooner of two requests (a pass's steps each may make one)."""
        delays = [d for d in (self.requeue_after, other.requeue_after) if d is not None]
        return Result(min(delays)) if delays else self


@dataclass(frozen=True)
class Batch:
    namespaces: frozenset[str]
    resync: bool  # the periodic full pass is due: every namespace with a policy


class WorkQueue:
    def __init__(
        self,
        coalesce_seconds: float,
        resync_seconds: float,
        clock: Clock | None = None,
    ) -> None:
        self.coalesce_seconds = coalesce_seconds
        self.resync_seconds = resync_seconds
        self.clock: Clock = clock or LoopClock()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._last_resync = self.clock()
        self._timers: dict[str, tuple[float, Timer]] = {}

    def mark(self, namespace: str) -> None:
        self._dirty.add(namespace)
        self._wake.set()

    def mark_many(self, namespaces: Iterable[str]) -> None:
        for namespace in namespaces:
            self.mark(namespace)

    def requeue_after(self, namespace: str, delay: float) -> None:
        """Marks ``namespace`` after ``delay`` seconds; the earliest pending request wins."""
        due = self.clock() + delay
        pending = self._timers.get(namespace)
        if pending and pending[0] <= due:
            return
        if pending:
            pending[1].cancel()

        def fire() -> None:
            self._timers.pop(namespace, None)
            self.mark(namespace)

        self._timers[namespace] = (due, self.clock.call_later(delay, fire))

    def settle(self, namespace: str, result: Result) -> None:
        """What a pass over ``namespace`` asked for: one requeue, at the smallest delay."""
        if result.requeue_after is not None:
            self.requeue_after(namespace, max(0.0, result.requeue_after))

    def scheduled(self, namespace: str) -> float | None:
        """When a delayed mark of ``namespace`` is due (on this queue's clock), if any."""
        pending = self._timers.get(namespace)
        return pending[0] if pending else None

    def __len__(self) -> int:
        return len(self._dirty)

    async def get(self) -> Batch:
        """The next batch: waits for a mark (or the resync), then lets a burst land."""
        while True:
            left = self._last_resync + self.resync_seconds - self.clock()
            if left > 0 and not self._wake.is_set():
                timer = self.clock.call_later(left, self._wake.set)  # the resync is due
                try:
                    await self._wake.wait()
                finally:
                    timer.cancel()
            resync = self.clock() - self._last_resync >= self.resync_seconds
            if resync:
                self._last_resync = self.clock()
            if not self._dirty and not resync:
                self._wake.clear()
                continue
            if self.coalesce_seconds > 0:
                await asyncio.sleep(self.coalesce_seconds)  # a burst of events: one pass
            self._wake.clear()
            batch, self._dirty = frozenset(self._dirty), set()
            return Batch(batch, resync)

    def close(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
