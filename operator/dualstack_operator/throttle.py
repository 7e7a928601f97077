"""How fast the operator writes: one shared, adaptive limit for every write it sends.

An API server that answers 429 (priority and fairness rejecting the operator's
share), 5xx or nothing at all is overloaded or away. Sending the rest of a pass's
writes at full concurrency then only adds load and fills the audit log with
refusals, so every writer shares one gate: it pauses all writes for the server's
Retry-After (or a growing backoff), halves the writes allowed in flight, and grows
them back by one per success (additive increase, multiplicative decrease).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

DEFAULT_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)


class Throttle:
    def __init__(
        self,
        concurrency: int,
        backoff: tuple[float, ...] = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = max(1, concurrency)
        self.limit = float(self.ceiling)  # writes allowed in flight now
        self.backoff = backoff
        self.clock = clock
        self.in_flight = 0
        self.paused_until = 0.0
        self.strikes = 0  # overloads in a row, without a success between them
        self._changed = asyncio.Condition()

    def paused(self) -> float:
        """Seconds until writes may be sent again (0: now). A write that finds the gate
        paused is not sent: its pass is queued again for when the pause ends."""
        return max(0.0, self.paused_until - self.clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Held while one write is in flight (at most ``limit`` at once)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()

    def succeeded(self) -> None:
        self.strikes = 0
        self.limit = min(float(self.ceiling), self.limit + 1.0)

    def overloaded(self, retry_after: float | None) -> float:
        """Records a 429/5xx/no answer; returns how long every write now waits.

        The writes that were already in flight fail together: only the first of them
        (the one that finds no pause in effect) halves the limit and adds a strike.
        """
        now = self.clock()
        if now >= self.paused_until:
            self.strikes += 1
            self.limit = max(1.0, self.limit / 2)
        delay = self.backoff[min(max(self.strikes, 1), len(self.backoff)) - 1]
        if retry_after is not None:
            delay = max(delay, retry_after)
        self.paused_until = max(self.paused_until, now + delay)
        return self.paused_until - now
