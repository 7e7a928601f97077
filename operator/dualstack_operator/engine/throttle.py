"""How fast the operator writes: one shared, adaptive limit for every write it sends.

Two kinds of trouble, two answers:
- 429: priority and fairness refused the operator's share. The writes allowed in
  flight are halved (to one at least) and do not grow again until the server's
  Retry-After has passed; the refused write itself waits that long. The other
  writes go on at the lower concurrency, which the share does admit.
- 5xx or no answer: the server is failing or away, and every write would fail
  alike. All writes pause, for a backoff that grows while it lasts.
Each success adds one write in flight again, up to the configured concurrency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from dualstack_operator.core.errors import ApiError, TooManyRequests
from dualstack_operator.engine.backoff import Backoff

DEFAULT_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0)


class Throttle:
    def __init__(
        self,
        concurrency: int,
        backoff: tuple[float, ...] = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = max(1, concurrency)
        self.limit = self.ceiling  # writes allowed in flight now
        self.backoff = Backoff(backoff)
        self.clock = clock
        self.in_flight = 0
        self.paused_until = 0.0  # no write is sent before this (the server is away)
        self.steady_until = 0.0  # the limit does not grow before this (after a 429)
        self.strikes = 0  # failures in a row, without a success between them
        # Writes waiting for a slot, first come first served. A freed slot is handed to
        # the first of them: thousands may wait, and waking them all at every release
        # would cost the square of their number.
        self._waiting: deque[asyncio.Future[None]] = deque()

    def paused(self) -> float:
        """Seconds until writes may be sent again (0: now). A write that finds the gate
        paused is not sent: its pass is queued again for when the pause ends."""
        return max(0.0, self.paused_until - self.clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Held while one write is in flight (at most ``limit`` at once)."""
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
        else:
            handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(handed)
            try:
                await handed  # the slot is counted for us when it is handed over
            except asyncio.CancelledError:
                if handed.done() and not handed.cancelled():
                    self._release()  # handed over just as we were cancelled: pass it on
                else:
                    self._waiting.remove(handed)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        self.in_flight -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting and self.in_flight < self.limit:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def succeeded(self) -> None:
        self.strikes = 0
        if self.clock() >= self.steady_until:
            self.limit = min(self.ceiling, self.limit + 1)
            self._hand_over()

    def failed(self, err: ApiError) -> float:
        """Records a 429, 5xx or no answer; returns when to retry the failed write."""
        now = self.clock()
        self.strikes += 1
        self.limit = max(1, self.limit // 2)
        delay = self.backoff.delay(self.strikes)
        throttled = isinstance(err, TooManyRequests)
        if err.retry_after is not None:
            delay = err.retry_after if throttled else max(delay, err.retry_after)
        if throttled:
            self.steady_until = max(self.steady_until, now + delay)
            return delay
        self.paused_until = max(self.paused_until, now + delay)
        return self.paused_until - now
