"""What the operator has written and what the API server refused (pure; injected clock).

Two facts make writes safe under a watch-fed cache:
- A Service we patched keeps its old resourceVersion in the cache until our own
  write's event arrives; until then the write must not be repeated (in flight).
- A refused patch (a 422 from validation or admission) is not retried until a
  backoff has passed, unless the Service changes meanwhile (rejections).
- A Service someone keeps reverting (a controller or script fighting the policy)
  is written at most ``revert_limit`` times in ``revert_window`` seconds; then the
  operator stops writing it and reports who reverted it, until it is seen compliant.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dualstack_operator.api.models import DriftReason
from dualstack_operator.core.decision import Decision, State
from dualstack_operator.core.views import ServiceView
from dualstack_operator.engine.backoff import Backoff

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Rejection:
    resource_version: str  # the Service as it was when refused
    message: str
    retry_at: float
    attempts: int

    def decision(self) -> Decision:
        return Decision(State.DRIFTED, DriftReason.PATCH_REJECTED, self.message)


@dataclass(frozen=True)
class Job:
    """One write to attempt: the Service as cached and the decision carrying the patch."""

    service: ServiceView
    decision: Decision
    retry: bool  # a retry after a rejection: its Warning event was already posted


@dataclass
class Triage:
    """A pass's decisions sorted by what the ledger knows."""

    jobs: list[Job] = field(default_factory=list)
    pending: int = 0  # our writes whose events have not reached the cache yet
    held: dict[str, Decision] = field(default_factory=dict)  # refused, or reverted too often
    reverts: list[ServiceView] = field(default_factory=list)  # drifted again after our write
    stopped: list[ServiceView] = field(default_factory=list)  # newly given up on (Reverted)


class Ledger:
    def __init__(
        self,
        backoff: tuple[float, ...],
        clock: Callable[[], float],
        revert_limit: int = 3,
        revert_window: float = 600.0,
    ) -> None:
        self.backoff = Backoff(backoff)
        self.clock = clock
        self.revert_limit = revert_limit
        self.revert_window = revert_window
        # When we wrote each Service (recent writes only), and those we gave up on.
        self.written: dict[Key, deque[float]] = {}
        self.reverted: dict[Key, Decision] = {}
        # Services we patched, by the resourceVersion we patched *from*.
        self.inflight: dict[Key, str] = {}
        self.rejections: dict[Key, Rejection] = {}

    def triage(
        self, decisions: Mapping[str, Decision], services: Mapping[str, ServiceView]
    ) -> Triage:
        """Which decisions to write now; forgets entries the cache has moved past."""
        out = Triage()
        now = self.clock()
        for name, decision in decisions.items():
            svc = services[name]
            key = (svc.namespace, name)
            if self.inflight.get(key) == svc.resource_version:
                out.pending += 1
                continue
            self.inflight.pop(key, None)
            rejection = self.rejections.get(key)
            if rejection and rejection.resource_version != svc.resource_version:
                del self.rejections[key]  # the Service changed: judge it afresh
                rejection = None
            if decision.patch is None:
                # Compliant (fixed at its source, say): no longer given up on. Our recent
                # writes still count, so a fight that resumes stops at once.
                self.reverted.pop(key, None)
                continue
            if rejection and now < rejection.retry_at:
                out.held[name] = rejection.decision()
                continue
            if key in self.reverted:
                out.held[name] = self.reverted[key]
                continue
            times = self.written.get(key)
            while times and now - times[0] >= self.revert_window:
                times.popleft()
            if times:
                out.reverts.append(svc)  # we fixed it, and it drifted again
                if len(times) >= self.revert_limit:
                    self.reverted[key] = out.held[name] = Decision(
                        State.DRIFTED,
                        DriftReason.REVERTED,
                        f"reverted {len(times)} times within "
                        f"{self.revert_window / 60:.0f} min, last by "
                        f"{svc.written_by or 'another client'}; the operator stopped writing "
                        "it: change it where it is managed",
                    )
                    out.stopped.append(svc)
                    continue
            out.jobs.append(Job(svc, decision, retry=rejection is not None))
        return out

    def accepted(self, svc: ServiceView) -> None:
        key = (svc.namespace, svc.name)
        self.inflight[key] = svc.resource_version
        self.rejections.pop(key, None)
        self.written.setdefault(key, deque()).append(self.clock())

    def rejected(self, svc: ServiceView, message: str) -> Rejection:
        """Records a refusal; the next attempt waits out the next step of the backoff."""
        key = (svc.namespace, svc.name)
        before = self.rejections.get(key)
        attempts = before.attempts + 1 if before else 1
        delay = self.backoff.delay(attempts)
        rejection = Rejection(svc.resource_version, message, self.clock() + delay, attempts)
        self.rejections[key] = rejection
        return rejection

    def forget_namespace(self, namespace: str) -> None:
        """A namespace without policies: nothing of it is tracked any more."""
        for table in (self.inflight, self.rejections, self.written, self.reverted):
            for key in [k for k in table if k[0] == namespace]:
                del table[key]
