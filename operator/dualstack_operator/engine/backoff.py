"""One backoff: the n-th failure in a row waits the n-th delay, and the last one after."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    delays: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.delays:
            raise ValueError("a backoff needs at least one delay")

    def delay(self, failures: int) -> float:
        """How long to wait after ``failures`` failures in a row (1 or more)."""
        return self.delays[min(max(failures, 1), len(self.delays)) - 1]
