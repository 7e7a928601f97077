"""The active/standby gate: kopf's peering rule, applied to our own worker.

Kopf pauses its own watches while a live peer has a higher (or equal) priority.
The Service cache and the worker run beside kopf, so before every pass the
worker reads the same peering object and applies the same rule. A standby keeps
its cache warm, so a takeover starts from a complete view.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from dualstack_operator.core.errors import ApiError
from dualstack_operator.core.views import PeerRecord
from dualstack_operator.engine.settings import PeeringSettings

log = logging.getLogger("dualstack_operator.engine.peering")


def rivals(
    peers: Iterable[PeerRecord], identity: str, priority: int, now: datetime.datetime
) -> list[PeerRecord]:
    """Live peers that keep this replica standing by (kopf: equal priority pauses too)."""
    return [p for p in peers if p.identity != identity and p.priority >= priority and p.alive(now)]


class PeerReader(Protocol):
    async def read_peers(self, name: str, namespaces: tuple[str, ...]) -> list[PeerRecord]: ...


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class PeeringGate:
    """Whether this replica may write now (always, when standalone)."""

    def __init__(
        self,
        settings: PeeringSettings | None,
        namespaces: tuple[str, ...],
        reader: PeerReader,
        on_activated: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.namespaces = namespaces
        self.reader = reader
        self.on_activated = on_activated
        self.clock = clock
        self.wallclock = wallclock
        self.active = True
        self._checked: float | None = None

    @property
    def standby_recheck_seconds(self) -> float:
        """How long a standby waits before asking again (a fraction of the takeover bound)."""
        lifetime = self.settings.lifetime if self.settings else 60
        return max(1.0, lifetime / 10)

    async def is_active(self) -> bool:
        settings = self.settings
        if settings is None:
            return True
        if self._checked is not None and self.clock() - self._checked < settings.check_seconds:
            return self.active
        try:
            peers = await self.reader.read_peers(settings.name, self.namespaces)
        except ApiError as err:  # every failure arrives typed (kube.transport)
            log.warning(
                "cannot read the peering object: %s; staying %s",
                err,
                "active" if self.active else "standby",
            )
            return self.active
        active = not rivals(peers, settings.identity, settings.priority, self.wallclock())
        self._checked = self.clock()
        if active != self.active:
            log.info("peering: this replica is now %s", "active" if active else "standby")
            self.active = active
            if active:
                self.on_activated()
        return active
