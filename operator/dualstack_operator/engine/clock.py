"""The engine's one notion of time: monotonic seconds and timers on those same seconds.

The queue's delayed marks and its resync run on the injected clock, so a test that
advances its clock fires them as the loop's timers would in production.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def __call__(self) -> float:
        """Now, in monotonic seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Runs ``callback`` once ``delay`` seconds of this clock have passed."""
        ...


class LoopClock:
    """Production time: ``time.monotonic`` and the running loop's timers (also monotonic)."""

    def __call__(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)
