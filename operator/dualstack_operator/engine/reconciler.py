"""One pass over a namespace: plan (pure) -> recreation, writes -> status; and the worker.

Level-based: every pass recomputes from the caches. A policy's status is written once
its Services have settled (no write of ours still on its way to the cache), and only
when it differs: bursts of events cost passes, not writes. A pass returns a
``Result`` (when to look again); the worker hands it to the queue, which owns retries,
as controller-runtime's does. The steps are collaborators: ``Remediator`` (the
Service writes), ``StatusWriter``, ``Recreations``, and ``core.endpoints`` (what the
EndpointSlices say).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from dualstack_operator.api.models import Admission, IPFamily
from dualstack_operator.api.names import DNS_NAMESPACE
from dualstack_operator.api.reasons import ConditionReason
from dualstack_operator.core.endpoints import with_missing_endpoints
from dualstack_operator.core.errors import ApiError
from dualstack_operator.core.plan import Planner, PolicyPlan, Summary
from dualstack_operator.core.readiness import DnsCheck, check_dns, with_readiness
from dualstack_operator.core.status import build_cluster_status, build_status
from dualstack_operator.core.views import PolicyView, ServiceView
from dualstack_operator.engine.backoff import Backoff
from dualstack_operator.engine.cache import Views
from dualstack_operator.engine.events import Events, FindingEvents, service_ref
from dualstack_operator.engine.ledger import Ledger
from dualstack_operator.engine.peering import PeeringGate
from dualstack_operator.engine.ports import (
    AdmissionSync,
    EventSink,
    MetricsSink,
    ServiceWriter,
    StatusStore,
)
from dualstack_operator.engine.queue import Result, WorkQueue
from dualstack_operator.engine.recreation import Recreations, Recreator
from dualstack_operator.engine.remediation import Remediator
from dualstack_operator.engine.settings import ReconcileSettings
from dualstack_operator.engine.status_writer import StatusWriter
from dualstack_operator.engine.throttle import Throttle

log = logging.getLogger("dualstack_operator")

LEGACY_RECHECK_SECONDS = 1.0  # how soon to probe again for the shared admission policy


@dataclass(frozen=True)
class Inputs:
    """What one pass over a namespace read: its policies (the reflector's objects, new
    ones whenever a policy changes), the cluster's families, the generations of its
    Services and its EndpointSlices, and what is known of its admission parameter."""

    policies: tuple[PolicyView, ...]
    cluster: tuple[IPFamily, ...]
    services: int
    slices: int
    parameter: object
    network_policies: int = 0
    dns: DnsCheck | None = None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Inputs)
            and len(self.policies) == len(other.policies)
            and all(a is b for a, b in zip(self.policies, other.policies, strict=True))
            and (self.cluster, self.services, self.slices, self.network_policies, self.dns)
            == (other.cluster, other.services, other.slices, other.network_policies, other.dns)
            and self.parameter == other.parameter
        )

    __hash__ = None  # type: ignore[assignment]


class Writer(ServiceWriter, StatusStore, EventSink, Protocol):
    """Every write a pass makes (one recording fake stands for all in the engine tests)."""


class Reconciler:
    def __init__(
        self,
        settings: ReconcileSettings,
        views: Views,
        writer: Writer,
        metrics: MetricsSink,
        clock: Callable[[], float] = time.monotonic,
        admission: Admission | None = None,
        native: AdmissionSync | None = None,
        recreator: Recreator | None = None,
    ) -> None:
        self.settings = settings
        self.admission = admission  # what status.admission reports
        self.native = native  # the native admission objects, kept (or removed) per namespace
        self.views = views
        self.metrics = metrics
        backoff = Backoff(settings.reject_backoff)
        # Writes in flight across all namespaces, fewer (and paused) while the API
        # server answers 429 or fails; its priority and fairness queues the rest.
        self.throttle = Throttle(settings.write_concurrency, clock=clock)
        events = Events(writer, self.throttle)
        retry = settings.error_retry_seconds
        self.ledger = Ledger(
            settings.reject_backoff, clock, settings.revert_limit, settings.revert_window_seconds
        )
        self.remediator = Remediator(writer, self.ledger, self.throttle, events, metrics, retry)
        self.status = StatusWriter(writer, self.throttle, events, metrics, retry)
        self.findings = FindingEvents(events)  # a Service's readiness finding: one Event
        self.events = events
        self._dns_key: tuple[object, tuple[IPFamily, ...]] | None = None
        self._dns: DnsCheck | None = None
        self._dns_said: DnsCheck | None = None  # what report_dns last said
        # primaryFamilyChange: Recreate (None: never recreates)
        self.recreations = (
            Recreations(recreator, events, metrics, backoff, retry) if recreator else None
        )
        # A cluster policy's settled plan in each namespace it governs: its status.
        self.cluster_parts: dict[str, dict[str, PolicyPlan]] = {}
        self.cluster_dirty: set[str] = set()  # cluster policies whose parts changed
        self._cluster_seen: dict[str, tuple[PolicyView, tuple[IPFamily, ...], DnsCheck | None]] = {}
        # What the last settled pass concluded per policy, by namespace: its status and
        # metrics.
        self.summaries: dict[str, dict[str, Summary]] = {}
        # Namespaces whose last pass settled with nothing left to do, with what it read:
        # the same inputs again make the same pass, so it is not made (a resync over a
        # quiet cluster costs a comparison per namespace).
        self.settled: dict[str, Inputs] = {}
        self.planner = Planner()  # decides again only the Services that changed

    # --- what the metrics collector reads (metrics.State) ---------------------------------

    def policies(self) -> Iterator[PolicyView]:
        """Namespaced policies, and each cluster policy once per namespace it governs."""
        for policies in list(self.views.policies.values()):
            yield from list(policies)
        for policy in self.views.cluster_policy_list():
            for ns in sorted(self.cluster_parts.get(policy.name, {})):
                yield replace(policy, namespace=ns)

    def cluster_namespaces(self) -> set[str]:
        """Namespaces some cluster policy governed at its last pass."""
        return {ns for parts in self.cluster_parts.values() for ns in parts}

    def summary(self, namespace: str, name: str) -> Summary | None:
        return self.summaries.get(namespace, {}).get(name)

    def cluster_families(self) -> list[IPFamily]:
        return list(self.views.cluster.families)

    def cluster_dns_families(self) -> list[str] | None:
        dns = self.views.cluster_dns()
        return list(dns.ip_families) if isinstance(dns, ServiceView) else None

    @property
    def journaled(self) -> dict[str, int]:
        return self.recreations.journaled if self.recreations else {}

    # --- around the passes ------------------------------------------------------------------

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

    async def sync_shared_admission(self) -> Result:
        """The shared native policies in step, and earlier per-namespace ones retired once
        those serve (looked at again shortly while they do not yet)."""
        if self.native is None:
            return Result()
        try:
            await self.native.sync_shared()
        except ApiError as err:
            self.metrics.error("admission")
            log.warning("cannot keep the shared admission policies: %s", err)
        if self.native.legacy and self.native.parameters:
            return Result(LEGACY_RECHECK_SECONDS)
        return Result()

    async def refresh_journal(self) -> set[str]:
        """Recreations a previous run journaled and did not finish: their namespaces."""
        return await self.recreations.refresh() if self.recreations else set()

    # --- one pass -------------------------------------------------------------------------

    async def reconcile_guarded(self, namespace: str) -> Result:
        """A pass that fails (a restarting API server, say) is counted and retried."""
        try:
            return await self.reconcile(namespace)
        # Any failure: a bug in one pass must not stop the worker (controller-runtime
        # recovers a reconciler's panic the same way).
        except Exception:
            self.metrics.error("policy")
            delay = self.settings.error_retry_seconds
            log.exception("reconciling namespace %s failed; retrying in %.0fs", namespace, delay)
            return Result(delay)

    def _inputs(self, namespace: str, policies: list[PolicyView]) -> Inputs:
        """Everything a pass over ``namespace`` reads, by identity or generation."""
        views = self.views
        native = self.native.parameters.get(namespace) if self.native is not None else None
        netpols = views.network_policies
        return Inputs(
            tuple(policies),
            tuple(views.cluster.families),
            views.services.generation(namespace),
            views.slices.generation(namespace) if views.slices is not None else 0,
            native,
            netpols.generation(namespace) if netpols is not None else 0,
            self.dns(),
        )

    def dns(self) -> DnsCheck | None:
        """The cluster DNS Service, checked against the cluster's families (ClusterDNS);
        computed again only when the Service's view or the families change."""
        view, families = self.views.cluster_dns(), tuple(self.views.cluster.families)
        if self._dns_key is None or self._dns_key[0] is not view or self._dns_key[1] != families:
            self._dns_key = (view, families)
            self._dns = check_dns(view, families)
        return self._dns

    async def report_dns(self) -> None:
        """One Event on the cluster DNS Service when its finding appears or goes (the
        ClusterDNS condition of every policy says it too, without an Event each)."""
        dns = self.dns()
        said, self._dns_said = self._dns_said, dns
        if dns is None or dns == said:
            return
        ref = service_ref(DNS_NAMESPACE, dns.name)
        if dns.finding is not None:
            await self.events.post(ref, "Warning", dns.finding.reason, dns.finding.message)
        elif said is not None and said.finding is not None:
            served = f"serves {', '.join(dns.families)}"
            await self.events.post(ref, "Normal", ConditionReason.CLUSTER_DNS_DUAL_STACK, served)

    async def reconcile(self, namespace: str) -> Result:
        policies = self.views.policies_in(namespace)
        inputs = self._inputs(namespace, policies)
        if self.settled.get(namespace) == inputs:
            return Result()  # nothing it reads has changed since it settled: the same pass
        self.settled.pop(namespace, None)
        clean, result = await self._reconcile(namespace, policies)
        if clean:
            self.settled[namespace] = self._inputs(namespace, policies)
        return result

    async def _sync_admission(
        self, namespace: str, policies: list[PolicyView], cluster: list[IPFamily]
    ) -> tuple[Admission | None, Result]:
        """The namespace's admission objects first; the mechanism in effect for its status."""
        if self.native is None or await self.native.sync_guarded(namespace, policies, cluster):
            return self.admission, Result()
        self.metrics.error("admission")
        effective = None if self.admission == Admission.POLICY else self.admission
        return effective, Result(self.settings.error_retry_seconds)

    def _forget(self, namespace: str, policies: list[PolicyView]) -> list[str]:
        """Drops what a namespace's gone policies left: their numbers and cluster parts."""
        governing = {p.name for p in policies if p.cluster}
        for name, parts in self.cluster_parts.items():
            if namespace in parts and name not in governing:
                del parts[namespace]  # no longer this cluster policy's namespace
                self.cluster_dirty.add(name)
        known = self.summaries.get(namespace, {})
        gone = [name for name in known if name not in {p.name for p in policies}]
        for name in gone:
            del known[name]  # a deleted policy's numbers go with it
        if not known:
            self.summaries.pop(namespace, None)
        return gone

    async def _reconcile(self, namespace: str, policies: list[PolicyView]) -> tuple[bool, Result]:
        """One pass; True when it settled with nothing left to do or to retry."""
        cluster = list(self.views.cluster.families)
        admission, result = await self._sync_admission(namespace, policies, cluster)
        clean = admission == self.admission
        gone = self._forget(namespace, policies)
        if not policies:
            self.planner.forget(namespace)
            self.findings.forget(namespace)
            if gone:
                self.ledger.forget_namespace(namespace)
                log.info(
                    "namespace %s has no DualStackPolicy any more; "
                    "its Services are left as they are",
                    namespace,
                )
            return clean, result  # nothing is rolled back
        open_recreation = False
        if self.recreations is not None:
            open_recreation, finished = await self.recreations.finish(namespace)
            result = result.merge(finished)
        # A snapshot: the cache moves on while this pass awaits its writes.
        services = dict(self.views.services.in_namespace(namespace))
        plans = self.planner.plan(namespace, policies, services, cluster)
        slices = self.views.slices
        if slices is not None and not slices.forbidden:
            plans = with_missing_endpoints(plans, services, slices.in_namespace(namespace).values())
        plans = with_readiness(plans, services, self.views.network_policies_in(namespace))
        await self.findings.report(namespace, plans)
        for plan in plans:
            if self.recreations is not None and not open_recreation:
                plan, open_recreation, recreated = await self.recreations.recreate_one(
                    plan, namespace, services, cluster
                )
                result = result.merge(recreated)
            with self.metrics.timed("policy"):
                settled, written = await self._reconcile_policy(
                    plan, namespace, services, cluster, admission
                )
            clean &= settled
            result = result.merge(written)
        return clean and not open_recreation and namespace not in self.journaled, result

    async def _reconcile_policy(
        self,
        plan: PolicyPlan,
        namespace: str,
        services: dict[str, ServiceView],
        cluster: list[IPFamily],
        admission: Admission | None,
    ) -> tuple[bool, Result]:
        """Writes what the plan says; True when nothing was left to write or to retry."""
        done = await self.remediator.remediate(plan, services)
        if done.pending:
            return False, done.result  # one status write once the dust settles
        settled = plan.with_overrides(done.held)
        self.summaries.setdefault(namespace, {})[plan.policy.name] = settled.summary()
        clean = not done.written and not done.held
        if plan.policy.cluster:
            # One status across namespaces: written after the batch (write_cluster_statuses).
            self.cluster_parts.setdefault(plan.policy.name, {})[namespace] = settled
            self.cluster_dirty.add(plan.policy.name)
            return clean, done.result
        status = build_status(settled, cluster, admission=admission, dns=self.dns())
        written, result = await self.status.write(plan.policy, status)
        return written and clean, done.result.merge(result)

    async def write_cluster_statuses(self) -> dict[str, Result]:
        """Each cluster policy's status from its namespaces' last settled passes: those
        whose parts changed, or whose policy did (a new object in the reflector). Returns
        what the namespaces of a status that could not be written ask of the queue."""
        current = {p.name: p for p in self.views.cluster_policy_list()}
        for gone in [n for n in self.cluster_parts if n not in current]:
            del self.cluster_parts[gone]
        cluster = list(self.views.cluster.families)
        dirty, self.cluster_dirty = self.cluster_dirty, set()
        retries: dict[str, Result] = {}
        dns = self.dns()
        for name, policy in current.items():
            seen = (policy, tuple(cluster), dns)
            if name not in dirty and self._cluster_seen.get(name) == seen:
                continue
            parts = self.cluster_parts.get(name, {})
            status = build_cluster_status(policy, parts, cluster, self.admission, dns=dns)
            written, result = await self.status.write(policy, status)
            if written:
                self._cluster_seen[name] = seen
                continue
            self.cluster_dirty.add(name)  # written at a later batch; one of its namespaces
            for ns in sorted(parts)[:1]:  # brings that batch
                retries[ns] = result
        return retries


async def work(reconciler: Reconciler, queue: WorkQueue, gate: PeeringGate, views: Views) -> None:
    """The worker: once the caches are complete, one batch of dirty namespaces at a time;
    each pass's ``Result`` goes to the queue, which requeues once at the smallest delay."""
    await views.services.synced.wait()
    if views.slices is not None:
        await views.slices.synced.wait()
    await views.policies_ready.wait()
    first = True
    # The first pass covers everything, admission objects left without a policy too.
    queue.mark_many(
        {
            *views.policy_namespaces(),
            *await reconciler.refresh_admission(),
            *await reconciler.refresh_journal(),
        }
    )
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
        ordered = sorted(namespaces)
        results = await asyncio.gather(*(reconciler.reconcile_guarded(ns) for ns in ordered))
        for namespace, result in zip(ordered, results, strict=True):
            queue.settle(namespace, result)
        for namespace, result in (await reconciler.write_cluster_statuses()).items():
            queue.settle(namespace, result)
        await reconciler.report_dns()
        shared = await reconciler.sync_shared_admission()
        native = reconciler.native
        if shared.requeue_after is not None and native is not None and native.parameters:
            queue.settle(min(native.parameters), shared)
        if full:
            first = False
            log.info(
                "full pass: %d namespaces with policies, %d Services cached, %.2fs (%.2fs CPU)",
                len(views.policy_namespaces()),
                len(views.services),
                time.monotonic() - began,
                time.process_time() - cpu,
            )
