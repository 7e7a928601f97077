"""The writes a plan calls for: which to send now (the ledger), each through the shared
gate, and what the API server's answers mean for the status and the next pass."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dualstack_operator.api.models import DriftReason
from dualstack_operator.api.reasons import EventReason
from dualstack_operator.core.decision import Decision
from dualstack_operator.core.errors import ApiError, Conflict, NotFound, Rejected
from dualstack_operator.core.plan import PolicyPlan
from dualstack_operator.core.views import PolicyView, ServiceView
from dualstack_operator.engine.events import Events, service_ref
from dualstack_operator.engine.ledger import Job, Ledger, Rejection
from dualstack_operator.engine.ports import MetricsSink, ServiceWriter
from dualstack_operator.engine.queue import Result
from dualstack_operator.engine.throttle import Throttle

log = logging.getLogger("dualstack_operator.engine.remediation")


def applied(patch: dict[str, Any], svc: ServiceView) -> dict[str, Any]:
    """The apply configuration for a decision's patch: both fields, always (server-side
    apply drops a field its manager owned and leaves out)."""
    spec = patch["spec"]
    return {
        "spec": {
            "ipFamilyPolicy": spec["ipFamilyPolicy"],
            "ipFamilies": list(spec.get("ipFamilies", svc.ip_families)),
        }
    }


@dataclass
class Remediation:
    """What writing a plan came to."""

    held: dict[str, Decision] = field(default_factory=dict)  # refused, or reverted too often
    pending: int = 0  # writes whose events have not reached the cache yet: no status now
    written: int = 0  # writes sent in this pass
    result: Result = field(default_factory=Result)


class Remediator:
    def __init__(
        self,
        writer: ServiceWriter,
        ledger: Ledger,
        throttle: Throttle,
        events: Events,
        metrics: MetricsSink,
        error_retry_seconds: float,
    ) -> None:
        self.writer = writer
        self.ledger = ledger
        self.throttle = throttle
        self.events = events
        self.metrics = metrics
        self.error_retry_seconds = error_retry_seconds

    async def remediate(self, plan: PolicyPlan, services: Mapping[str, ServiceView]) -> Remediation:
        triage = self.ledger.triage(plan.decisions, services)
        policy = plan.policy
        for _ in triage.reverts:
            self.metrics.reverted(policy.namespace, policy.name)
        for svc in triage.stopped:
            message = triage.held[svc.name].message
            log.warning("%s/%s: %s", svc.namespace, svc.name, message)
            ref = service_ref(svc.namespace, svc.name)
            await self.events.post(ref, "Warning", DriftReason.REVERTED, message)
        answers = await asyncio.gather(*(self._write(policy, job) for job in triage.jobs))
        out = Remediation(held=dict(triage.held), pending=triage.pending, written=len(triage.jobs))
        for job, (outcome, result) in zip(triage.jobs, answers, strict=True):
            out.result = out.result.merge(result)
            if isinstance(outcome, Rejection):
                out.held[job.service.name] = outcome.decision()
            elif outcome:
                out.pending += 1
        return out

    async def _write(self, policy: PolicyView, job: Job) -> tuple[bool | Rejection, Result]:
        """True: accepted (or to be retried soon); False: moot; a Rejection: refused."""
        svc, patch = job.service, job.decision.patch
        assert patch is not None
        try:
            async with self.throttle.slot():
                if (wait := self.throttle.paused()) > 0:
                    return True, Result(wait)  # the server is throttling us or away
                with self.metrics.timed("service"):
                    await self.writer.patch_service(
                        svc.namespace, svc.name, applied(patch, svc), svc.resource_version
                    )
        except (NotFound, Conflict):
            return False, Result()  # deleted or changed meanwhile: its event brings a pass
        except Rejected as err:
            self.metrics.remediated(svc.namespace, policy.name, ok=False)
            self.metrics.error("service")
            message = f"the API server rejected {patch['spec']}: {err.message}"
            rejection = self.ledger.rejected(svc, message)
            delay = rejection.retry_at - self.ledger.clock()
            log.warning("%s/%s: %s (retry in %.0fs)", svc.namespace, svc.name, message, delay)
            if not job.retry:
                ref = service_ref(svc.namespace, svc.name)
                await self.events.post(ref, "Warning", DriftReason.PATCH_REJECTED, message)
            return rejection, Result(delay)
        except ApiError as err:  # throttled, unavailable, timed out: try again soon
            self.metrics.remediated(svc.namespace, policy.name, ok=False)
            self.metrics.error("service")
            delay = failed_write(self.throttle, err, self.error_retry_seconds)
            log.warning("%s/%s: %s (retry in %.0fs)", svc.namespace, svc.name, err, delay)
            return True, Result(delay)  # no status from a pass that could not finish
        self.throttle.succeeded()
        self.ledger.accepted(svc)
        self.metrics.remediated(svc.namespace, policy.name, ok=True)
        spec = patch["spec"]
        message = f"policy {policy.name}: ipFamilyPolicy {svc.ip_family_policy} -> " + str(
            spec["ipFamilyPolicy"]
        )
        if "ipFamilies" in spec:
            message += f", ipFamilies {list(svc.ip_families)} -> {spec['ipFamilies']}"
        log.info("%s/%s remediated: %s", svc.namespace, svc.name, message)
        ref = service_ref(svc.namespace, svc.name)
        await self.events.post(ref, "Normal", EventReason.REMEDIATED, message)
        return True, Result()


def failed_write(throttle: Throttle, err: ApiError, otherwise: float) -> float:
    """When to try a failed write again: after the shared pause for a throttled or
    failing server (every writer waits it out), else the usual retry."""
    if err.transient:
        return throttle.failed(err)
    return otherwise
