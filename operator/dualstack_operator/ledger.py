"""What the operator has written and what the API server refused (pure; injected clock).

Two facts make writes safe under a watch-fed cache:
- A Service we patched keeps its old resourceVersion in the cache until our own
  write's event arrives; until then the write must not be repeated (in flight).
- A refused patch (a 422 from validation or admission) is not retried until a
  backoff has passed, unless the Service changes meanwhile (rejections).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dualstack_operator.decision import Decision, ServiceView, State
from dualstack_operator.models import DriftReason

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
    held: dict[str, Decision] = field(default_factory=dict)  # refused, still backing off


class Ledger:
    def __init__(self, backoff: tuple[float, ...], clock: Callable[[], float]) -> None:
        if not backoff:
            raise ValueError("the rejection backoff needs at least one delay")
        self.backoff = backoff
        self.clock = clock
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
                continue
            if rejection and now < rejection.retry_at:
                out.held[name] = rejection.decision()
                continue
            out.jobs.append(Job(svc, decision, retry=rejection is not None))
        return out

    def accepted(self, svc: ServiceView) -> None:
        key = (svc.namespace, svc.name)
        self.inflight[key] = svc.resource_version
        self.rejections.pop(key, None)

    def rejected(self, svc: ServiceView, message: str) -> Rejection:
        """Records a refusal; the next attempt waits out the next step of the backoff."""
        key = (svc.namespace, svc.name)
        before = self.rejections.get(key)
        attempts = before.attempts + 1 if before else 1
        delay = self.backoff[min(attempts, len(self.backoff)) - 1]
        rejection = Rejection(svc.resource_version, message, self.clock() + delay, attempts)
        self.rejections[key] = rejection
        return rejection

    def forget_namespace(self, namespace: str) -> None:
        """A namespace without policies: nothing of it is tracked any more."""
        for table in (self.inflight, self.rejections):
            for key in [k for k in table if k[0] == namespace]:
                del table[key]
