"""One pass over a namespace: plan (pure) -> writes -> status; and the worker loop.

Level-based: every pass recomputes from the cache. A policy's status is written
once its Services have settled (no write of ours still on its way to the
cache), and only when it differs: bursts of events cost passes, not writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from dualstack_operator import models
from dualstack_operator.admission_sync import NativeAdmission
from dualstack_operator.cache import Views
from dualstack_operator.decision import ServiceView
from dualstack_operator.errors import ApiError, Conflict, NotFound, Rejected
from dualstack_operator.ledger import Job, Ledger, Rejection
from dualstack_operator.metrics import Metrics
from dualstack_operator.models import IPFamily
from dualstack_operator.peering import PeeringGate
from dualstack_operator.plan import (
    PolicyPlan,
    PolicyView,
    Summary,
    build_status,
    plan_namespace,
    status_differs,
)
from dualstack_operator.queue import WorkQueue
from dualstack_operator.settings import Admission, ReconcileSettings

log = logging.getLogger("dualstack_operator")


class Writer(Protocol):
    """The writes a pass makes (``KubeAPI``; a recording fake in the engine tests)."""

    async def patch_service(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str
    ) -> None: ...

    async def patch_policy_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...

    async def post_event(
        self, involved: dict[str, str], type: str, reason: str, message: str
    ) -> None: ...


def _ref(kind: str, api_version: str, namespace: str, name: str, uid: str = "") -> dict[str, str]:
    ref = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    if uid:
        ref["uid"] = uid
    return ref


class Reconciler:
    def __init__(
        self,
        settings: ReconcileSettings,
        views: Views,
        writer: Writer,
        metrics: Metrics,
        queue: WorkQueue,
        clock: Callable[[], float] = time.monotonic,
        admission: Admission | None = None,
        native: NativeAdmission | None = None,
    ) -> None:
        self.settings = settings
        self.admission = admission  # what status.admission reports
        self.native = native  # the native admission objects, kept (or removed) per namespace
        self.views = views
        self.writer = writer
        self.metrics = metrics
        self.queue = queue
        self.ledger = Ledger(settings.reject_backoff, clock)
        # What the last settled pass concluded per policy: its status and metrics.
        self.summaries: dict[tuple[str, str], Summary] = {}
        # Concurrent Service patches across all namespaces (the API server's own
        # priority and fairness queues the rest).
        self.write_slots = asyncio.Semaphore(settings.write_concurrency)

    # --- what the metrics collector reads (metrics.State) ---------------------------------

    def policies(self) -> Iterator[PolicyView]:
        for policies in list(self.views.policies.values()):
            yield from list(policies)

    def summary(self, namespace: str, name: str) -> Summary | None:
        return self.summaries.get((namespace, name))

    def cluster_families(self) -> list[IPFamily]:
        return list(self.views.cluster.families)

    # --- one pass -------------------------------------------------------------------------

    async def reconcile_guarded(self, namespace: str) -> None:
        """A pass that fails (a restarting API server, say) is counted and retried."""
        try:
            await self.reconcile(namespace)
        except Exception:
            self.metrics.error("policy")
            delay = self.settings.error_retry_seconds
            log.exception("reconciling namespace %s failed; retrying in %.0fs", namespace, delay)
            self.queue.requeue_after(namespace, delay)

    async def refresh_admission(self) -> set[str]:
        """Re-reads the native admission objects; the namespaces that have some."""
        if self.native is None:
            return set()
        try:
            await self.native.refresh()
        except ApiError as err:
            self.metrics.error("admission")
            log.warning("cannot list the native admission objects: %s", err)
        return self.native.namespaces()

    async def _sync_admission(
        self, namespace: str, policies: list[PolicyView], cluster: list[IPFamily]
    ) -> Admission | None:
        """The namespace's admission objects first; the mechanism in effect for its status."""
        if self.native is None:
            return self.admission
        if await self.native.sync_guarded(namespace, policies, cluster):
            return self.admission
        self.metrics.error("admission")
        self.queue.requeue_after(namespace, self.settings.error_retry_seconds)
        return None if self.admission == Admission.POLICY else self.admission

    async def reconcile(self, namespace: str) -> None:
        policies = self.views.policies_in(namespace)
        cluster = list(self.views.cluster.families)
        admission = await self._sync_admission(namespace, policies, cluster)
        names = {p.name for p in policies}
        gone = [k for k in self.summaries if k[0] == namespace and k[1] not in names]
        for key in gone:
            del self.summaries[key]  # a deleted policy's numbers go with it
        if not policies:
            if gone:
                self.ledger.forget_namespace(namespace)
                log.info(
                    "namespace %s has no DualStackPolicy any more; "
                    "its Services are left as they are",
                    namespace,
                )
            return  # nothing is rolled back
        # A snapshot: the cache moves on while this pass awaits its writes.
        services = dict(self.views.services.in_namespace(namespace))
        for plan in plan_namespace(policies, services.values(), cluster):
            with self.metrics.duration.labels("policy").time():
                await self._reconcile_policy(plan, services, cluster, admission)

    async def _reconcile_policy(
        self,
        plan: PolicyPlan,
        services: Mapping[str, ServiceView],
        cluster: list[IPFamily],
        admission: Admission | None,
    ) -> None:
        triage = self.ledger.triage(plan.decisions, services)
        outcomes = await asyncio.gather(*(self._remediate(plan.policy, j) for j in triage.jobs))
        held = dict(triage.held)
        pending = triage.pending  # writes whose events are still to come: the next pass
        for job, outcome in zip(triage.jobs, outcomes, strict=True):
            if isinstance(outcome, Rejection):
                held[job.service.name] = outcome.decision()
            elif outcome:
                pending += 1
        if pending:
            return  # one status write once the dust settles, not one per pass
        settled = plan.with_overrides(held)
        self.summaries[(plan.policy.namespace, plan.policy.name)] = settled.summary()
        status = build_status(settled, cluster, admission=admission)
        await self._write_status(plan.policy, status)

    async def _remediate(self, policy: PolicyView, job: Job) -> bool | Rejection:
        """True: accepted (or to be retried soon); False: moot; a Rejection: refused."""
        svc, patch = job.service, job.decision.patch
        assert patch is not None
        ref = _ref("Service", "v1", svc.namespace, svc.name)
        try:
            async with self.write_slots:
                with self.metrics.duration.labels("service").time():
                    await self.writer.patch_service(
                        svc.namespace, svc.name, patch, svc.resource_version
                    )
        except (NotFound, Conflict):
            return False  # deleted or changed meanwhile: its event brings a new pass
        except Rejected as err:
            self.metrics.remediated(svc.namespace, policy.name, ok=False)
            self.metrics.error("service")
            message = f"the API server rejected {patch['spec']}: {err.message}"
            rejection = self.ledger.rejected(svc, message)
            delay = rejection.retry_at - self.ledger.clock()
            self.queue.requeue_after(svc.namespace, delay)
            log.warning("%s/%s: %s (retry in %.0fs)", svc.namespace, svc.name, message, delay)
            if not job.retry:
                await self._event(ref, "Warning", "PatchRejected", message)
            return rejection
        except ApiError as err:  # throttled, unavailable, timed out: try again soon
            self.metrics.remediated(svc.namespace, policy.name, ok=False)
            self.metrics.error("service")
            delay = self.settings.error_retry_seconds
            log.warning("%s/%s: %s (retry in %.0fs)", svc.namespace, svc.name, err, delay)
            self.queue.requeue_after(svc.namespace, delay)
            return True  # no status from a pass that could not finish its writes
        self.ledger.accepted(svc)
        self.metrics.remediated(svc.namespace, policy.name, ok=True)
        spec = patch["spec"]
        message = f"policy {policy.name}: ipFamilyPolicy {svc.ip_family_policy} -> " + str(
            spec["ipFamilyPolicy"]
        )
        if "ipFamilies" in spec:
            message += f", ipFamilies {list(svc.ip_families)} -> {spec['ipFamilies']}"
        log.info("%s/%s remediated: %s", svc.namespace, svc.name, message)
        await self._event(ref, "Normal", "Remediated", message)
        return True

    async def _write_status(self, policy: PolicyView, status: dict[str, Any]) -> None:
        if not status_differs(policy.status, status):
            return
        try:
            await self.writer.patch_policy_status(policy.namespace, policy.name, status)
        except NotFound:
            return  # deleted meanwhile
        except ApiError as err:
            self.metrics.error("policy")
            log.warning("cannot write status of %s/%s: %s", policy.namespace, policy.name, err)
            self.queue.requeue_after(policy.namespace, self.settings.error_retry_seconds)
            return
        old = {c.get("type"): c for c in policy.status.get("conditions") or []}
        ref = _ref(
            models.KIND,
            f"{models.GROUP}/{models.VERSION}",
            policy.namespace,
            policy.name,
            policy.uid,
        )
        for cond in status.get("conditions", []):
            before = old.get(cond["type"])
            if before is None or before.get("reason") != cond["reason"]:
                healthy = cond["status"] == "True"
                kind = "Normal" if healthy else "Warning"
                await self._event(ref, kind, cond["reason"], cond["message"])

    async def _event(self, ref: dict[str, str], type: str, reason: str, message: str) -> None:
        try:
            await self.writer.post_event(ref, type, reason, message)
        except ApiError as err:
            log.warning("cannot post event %s on %s/%s: %s", reason, ref["kind"], ref["name"], err)


async def work(reconciler: Reconciler, queue: WorkQueue, gate: PeeringGate, views: Views) -> None:
    """The worker: once the caches are complete, one batch of dirty namespaces at a time."""
    await views.services.synced.wait()
    await views.policies_ready.wait()
    first = True
    # The first pass covers everything, admission objects left without a policy too.
    queue.mark_many({*views.policy_namespaces(), *await reconciler.refresh_admission()})
    while True:
        batch = await queue.get()
        namespaces = set(batch.namespaces)
        full = first or batch.resync
        if batch.resync:
            namespaces |= set(views.policy_namespaces())
            if not first:
                namespaces |= await reconciler.refresh_admission()
        if not await gate.is_active():
            # A standby: look again later (kopf's peering decides when we take over).
            for namespace in namespaces:
                queue.requeue_after(namespace, gate.standby_recheck_seconds)
            continue
        began, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(reconciler.reconcile_guarded(ns) for ns in sorted(namespaces)))
        if full:
            first = False
            log.info(
                "full pass: %d namespaces with policies, %d Services cached, %.2fs (%.2fs CPU)",
                len(views.policy_namespaces()),
                len(views.services),
                time.monotonic() - began,
                time.process_time() - cpu,
            )
