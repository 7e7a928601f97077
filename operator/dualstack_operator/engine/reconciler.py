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
from dataclasses import dataclass, replace
from typing import Any, Protocol

from dualstack_operator.admission.native import NativeAdmission
from dualstack_operator.api import names
from dualstack_operator.api.models import (
    Admission,
    DriftReason,
    IPFamily,
    Mode,
    PrimaryFamilyChange,
)
from dualstack_operator.api.names import RECREATE_ANNOTATION
from dualstack_operator.core.creation import creation_patch
from dualstack_operator.core.decision import Decision, State
from dualstack_operator.core.endpoints import missing_endpoints, ready_by_service
from dualstack_operator.core.errors import ApiError, Conflict, NotFound, Rejected
from dualstack_operator.core.plan import Planner, PolicyPlan, Summary
from dualstack_operator.core.recreation import Outcome, describe_fields, recreatable
from dualstack_operator.core.status import build_cluster_status, build_status, status_differs
from dualstack_operator.core.views import PolicyView, ServiceView
from dualstack_operator.engine.cache import Views
from dualstack_operator.engine.ledger import Job, Ledger, Rejection
from dualstack_operator.engine.peering import PeeringGate
from dualstack_operator.engine.queue import WorkQueue
from dualstack_operator.engine.recreation import Recreator
from dualstack_operator.engine.throttle import Throttle
from dualstack_operator.observability.metrics import Metrics
from dualstack_operator.runtime.settings import ReconcileSettings

log = logging.getLogger("dualstack_operator")


@dataclass(frozen=True)
class Inputs:
    """What one pass over a namespace read: its policies (the index's objects, which are
    new ones whenever a policy changes), the cluster's families, and the generations of
    its Services and its EndpointSlices, and what is known of its admission parameter."""

    policies: tuple[PolicyView, ...]
    cluster: tuple[IPFamily, ...]
    services: int
    slices: int
    parameter: object

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Inputs)
            and len(self.policies) == len(other.policies)
            and all(a is b for a, b in zip(self.policies, other.policies, strict=True))
            and (self.cluster, self.services, self.slices)
            == (other.cluster, other.services, other.slices)
            and self.parameter == other.parameter
        )

    __hash__ = None  # type: ignore[assignment]


LEGACY_RECHECK_SECONDS = 1.0  # how soon to probe again for the shared admission policy


class Writer(Protocol):
    """The writes a pass makes (``KubeAPI``; a recording fake in the engine tests)."""

    async def patch_service(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str
    ) -> None: ...

    async def patch_policy_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...

    async def patch_cluster_policy_status(self, name: str, status: dict[str, Any]) -> None: ...

    async def post_event(
        self, involved: dict[str, str], type: str, reason: str, message: str
    ) -> None: ...


def _ref(kind: str, api_version: str, namespace: str, name: str, uid: str = "") -> dict[str, str]:
    ref = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    if uid:
        ref["uid"] = uid
    return ref


def _applied(patch: dict[str, Any], svc: ServiceView) -> dict[str, Any]:
    """The apply configuration for a decision's patch: both fields, always (server-side
    apply drops a field its manager owned and leaves out)."""
    spec = patch["spec"]
    return {
        "spec": {
            "ipFamilyPolicy": spec["ipFamilyPolicy"],
            "ipFamilies": list(spec.get("ipFamilies", svc.ip_families)),
        }
    }


def _policy_ref(policy: PolicyView) -> dict[str, str]:
    return _ref(policy.kind, names.API_VERSION, policy.namespace, policy.name, policy.uid)


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
        recreator: Recreator | None = None,
    ) -> None:
        self.settings = settings
        self.admission = admission  # what status.admission reports
        self.native = native  # the native admission objects, kept (or removed) per namespace
        self.recreator = recreator  # primaryFamilyChange: Recreate (None: never recreates)
        # Namespaces with a journaled recreation still to finish, and its failed attempts.
        self.journaled: dict[str, int] = {}
        # A cluster policy's settled plan in each namespace it governs: its status.
        self.cluster_parts: dict[str, dict[str, PolicyPlan]] = {}
        self.views = views
        self.writer = writer
        self.metrics = metrics
        self.queue = queue
        self.ledger = Ledger(
            settings.reject_backoff,
            clock,
            settings.revert_limit,
            settings.revert_window_seconds,
        )
        # What the last settled pass concluded per policy, by namespace: its status and
        # metrics.
        self.summaries: dict[str, dict[str, Summary]] = {}
        # Namespaces whose last pass settled with nothing left to do, with what it read:
        # the same inputs again make the same pass, so it is not made (a resync over a
        # quiet cluster costs a comparison per namespace).
        self.settled: dict[str, Inputs] = {}
        self.planner = Planner()  # decides again only the Services that changed
        self.cluster_dirty: set[str] = set()  # cluster policies whose parts changed
        self._cluster_seen: dict[str, tuple[PolicyView, tuple[IPFamily, ...]]] = {}
        # Writes in flight across all namespaces, fewer (and paused) while the API
        # server answers 429 or fails; its priority and fairness queues the rest.
        self.throttle = Throttle(settings.write_concurrency, clock=clock)

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

    async def sync_shared_admission(self) -> None:
        """The shared native policies in step, and earlier per-namespace ones retired once
        those serve (looked at again shortly while they do not yet)."""
        if self.native is None:
            return
        try:
            await self.native.sync_shared()
        except ApiError as err:
            self.metrics.error("admission")
            log.warning("cannot keep the shared admission policies: %s", err)
        if self.native.legacy and self.native.parameters:
            self.queue.requeue_after(min(self.native.parameters), LEGACY_RECHECK_SECONDS)

    async def refresh_journal(self) -> set[str]:
        """Recreations a previous run journaled and did not finish: their namespaces."""
        if self.recreator is None:
            return set()
        try:
            entries = await self.recreator.pending()
        except ApiError as err:
            log.warning("cannot read the recreation journal: %s", err)
            return set()
        for entry in entries:
            log.info(
                "%s/%s: a journaled recreation to finish (policy %s)",
                entry.namespace,
                entry.service,
                entry.policy,
            )
            self.journaled.setdefault(entry.namespace, 0)
        return {entry.namespace for entry in entries}

    async def _finish_recreations(self, namespace: str) -> bool:
        """Finishes the namespace's journaled recreations; True while one is still open."""
        assert self.recreator is not None
        for entry in await self.recreator.pending(namespace):
            outcome = await self.recreator.finish(entry)
            await self._recreation_reported(outcome)
            if not outcome.done:
                attempts = self.journaled.get(namespace, 0)
                self.journaled[namespace] = attempts + 1
                backoff = self.settings.reject_backoff
                delay = backoff[min(attempts, len(backoff) - 1)]
                self.queue.requeue_after(namespace, delay)
                return True
        self.journaled.pop(namespace, None)
        return False

    async def _recreation_reported(self, outcome: Outcome) -> None:
        """Log, metric and Events for one recreation attempt."""
        entry = outcome.entry
        ns, name = entry.namespace, entry.service
        fields = {k: entry.manifest["spec"].get(k) for k in ("ipFamilyPolicy", "ipFamilies")}
        cluster_scoped = entry.policy_kind == names.CLUSTER_KIND
        policy_ref = _ref(
            entry.policy_kind,
            names.API_VERSION,
            "" if cluster_scoped else ns,
            entry.policy,
        )
        created = outcome.created
        if outcome.done and created is not None:
            self.metrics.recreated(ns, entry.policy, ok=True)
            ips = (created.get("spec") or {}).get("clusterIPs") or []
            now = describe_fields(fields["ipFamilyPolicy"], fields["ipFamilies"] or [])
            message = (
                f"{name} deleted and created again as {now} by policy "
                f"{entry.policy}: new clusterIPs {', '.join(ips)} (old uid {entry.old_uid})"
            )
            log.info("%s/%s recreated: %s", ns, name, message)
            uid = str((created.get("metadata") or {}).get("uid", ""))
            await self._event(_ref("Service", "v1", ns, name, uid), "Normal", "Recreated", message)
            await self._event(policy_ref, "Normal", "Recreated", message)
        elif outcome.done:
            log.warning("%s/%s: %s", ns, name, outcome.message)
            await self._event(
                policy_ref, "Warning", "RecreateBlocked", f"{name}: {outcome.message}"
            )
        else:
            self.metrics.recreated(ns, entry.policy, ok=False)
            self.metrics.error("service")
            log.warning("%s/%s: %s (the journal keeps its manifest)", ns, name, outcome.message)
            await self._event(policy_ref, "Warning", "RecreateFailed", f"{name}: {outcome.message}")

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

    def _inputs(self, namespace: str, policies: list[PolicyView]) -> Inputs:
        """Everything a pass over ``namespace`` reads, by identity or generation."""
        views = self.views
        native = self.native.parameters.get(namespace) if self.native is not None else None
        return Inputs(
            tuple(policies),
            tuple(views.cluster.families),
            views.services.generation(namespace),
            views.slices.generation(namespace) if views.slices is not None else 0,
            native,
        )

    async def reconcile(self, namespace: str) -> None:
        policies = self.views.policies_in(namespace)
        inputs = self._inputs(namespace, policies)
        if self.settled.get(namespace) == inputs:
            return  # nothing it reads has changed since it settled: the same pass again
        self.settled.pop(namespace, None)
        clean = await self._reconcile(namespace, policies)
        if clean:
            self.settled[namespace] = self._inputs(namespace, policies)

    async def _reconcile(self, namespace: str, policies: list[PolicyView]) -> bool:
        """One pass; True when it settled with nothing left to do or to retry."""
        cluster = list(self.views.cluster.families)
        admission = await self._sync_admission(namespace, policies, cluster)
        clean = admission == self.admission
        names = {p.name for p in policies}
        governing = {p.name for p in policies if p.cluster}
        for name, parts in self.cluster_parts.items():
            if namespace in parts and name not in governing:
                del parts[namespace]  # no longer this cluster policy's namespace
                self.cluster_dirty.add(name)
        known = self.summaries.get(namespace, {})
        gone = [name for name in known if name not in names]
        for name in gone:
            del known[name]  # a deleted policy's numbers go with it
        if not known:
            self.summaries.pop(namespace, None)
        if not policies:
            self.planner.forget(namespace)
            if gone:
                self.ledger.forget_namespace(namespace)
                log.info(
                    "namespace %s has no DualStackPolicy any more; "
                    "its Services are left as they are",
                    namespace,
                )
            return clean  # nothing is rolled back
        # A snapshot: the cache moves on while this pass awaits its writes.
        open_recreation = False
        if self.recreator is not None and namespace in self.journaled:
            open_recreation = await self._finish_recreations(namespace)
        services = dict(self.views.services.in_namespace(namespace))
        plans = self._with_endpoints(
            namespace, self.planner.plan(namespace, policies, services, cluster), services
        )
        for plan in plans:
            if self.recreator is not None and not open_recreation:
                plan, open_recreation = await self._recreate_one(plan, namespace, services, cluster)
            with self.metrics.duration.labels("policy").time():
                clean &= await self._reconcile_policy(plan, namespace, services, cluster, admission)
        return clean and not open_recreation and namespace not in self.journaled

    def _with_endpoints(
        self, namespace: str, plans: list[PolicyPlan], services: Mapping[str, ServiceView]
    ) -> list[PolicyPlan]:
        """The plans with ``MissingEndpoints`` for compliant dual-stack Services whose
        EndpointSlices serve only one family (from the watched slices)."""
        slices = self.views.slices
        if slices is None or slices.forbidden:
            return plans
        candidates = [
            name
            for plan in plans
            for name, decision in plan.decisions.items()
            if decision.state == State.COMPLIANT and len(services[name].ip_families) == 2
        ]
        if not candidates:
            return plans
        ready = ready_by_service(slices.in_namespace(namespace).values())
        out = []
        for plan in plans:
            overrides = {}
            for name, decision in plan.decisions.items():
                if decision.state != State.COMPLIANT:
                    continue
                missing = missing_endpoints(services[name], ready.get(name, {}))
                if missing is not None:
                    overrides[name] = missing
            out.append(plan.with_overrides(overrides) if overrides else plan)
        return out

    async def _recreate_one(
        self,
        plan: PolicyPlan,
        ns: str,
        services: Mapping[str, ServiceView],
        cluster: list[IPFamily],
    ) -> tuple[PolicyPlan, bool]:
        """Under a Recreate policy, recreates one Service whose primary family is wrong.

        Returns the plan with the candidates' in-place patches taken out (a Service
        about to be recreated is not patched first) and whether a recreation is open.
        """
        spec = plan.policy.spec
        assert self.recreator is not None
        if (
            spec is None
            or spec.mode != Mode.ENFORCE
            or spec.primary_family_change != PrimaryFamilyChange.RECREATE
        ):
            return plan, False
        policy = plan.policy
        candidates: list[tuple[ServiceView, dict[str, Any]]] = []
        overrides: dict[str, Decision] = {}
        for name, decision in sorted(plan.decisions.items()):
            svc = services.get(name)
            if decision.reason != DriftReason.PRIMARY_FAMILY_MISMATCH or svc is None:
                continue
            if not recreatable(svc):
                if svc.type == "LoadBalancer":
                    overrides[name] = Decision(
                        decision.state,
                        decision.reason,
                        decision.message + " (a LoadBalancer is recreated only with "
                        f"{RECREATE_ANNOTATION}=true on the Service)",
                        decision.patch,
                    )
                continue
            fields = creation_patch(spec, svc.ip_family_policy, svc.ip_families, cluster)
            if fields is not None:
                candidates.append((svc, fields))
        exhausted = bool(candidates) and (
            self.recreator.budget_left(ns, policy.name, spec.max_recreations_per_hour) <= 0
        )
        note = "; to be recreated"
        if exhausted:
            wait = self.recreator.next_slot_seconds(ns, policy.name)
            self.queue.requeue_after(ns, wait + 1)
            note = (
                f"; the budget of {spec.max_recreations_per_hour} recreations per hour is "
                f"used, next in {wait / 60:.0f} min"
            )
        for svc, _ in candidates:
            decision = plan.decisions[svc.name]
            overrides[svc.name] = Decision(
                decision.state, decision.reason, decision.message + note, None
            )
        plan = plan.with_overrides(overrides)
        if not candidates or exhausted:
            return plan, False
        svc, fields = candidates[0]
        try:
            outcome = await self.recreator.recreate(
                ns, svc.name, policy.name, fields, spec.max_recreations_per_hour, policy.kind
            )
        except ApiError as err:  # the journal could not be written: nothing was deleted
            self.metrics.recreated(ns, policy.name, ok=False)
            self.metrics.error("service")
            message = f"{svc.name}: not recreated, the journal could not be written: {err}"
            log.warning("%s/%s", ns, message)
            await self._event(_policy_ref(policy), "Warning", "RecreateFailed", message)
            self.queue.requeue_after(ns, self.settings.error_retry_seconds)
            return plan, True
        if outcome is None:
            return plan, True  # the Service changed or went: its event brings a new pass
        await self._recreation_reported(outcome)
        if not outcome.done:
            self.journaled[ns] = 1
            self.queue.requeue_after(ns, self.settings.reject_backoff[0])
        return plan, True

    async def _reconcile_policy(
        self,
        plan: PolicyPlan,
        namespace: str,
        services: Mapping[str, ServiceView],
        cluster: list[IPFamily],
        admission: Admission | None,
    ) -> bool:
        """Writes what the plan says; True when nothing was left to write or to retry."""
        triage = self.ledger.triage(plan.decisions, services)
        policy = plan.policy
        for _ in triage.reverts:
            self.metrics.reverted(policy.namespace, policy.name)
        for svc in triage.stopped:
            message = triage.held[svc.name].message
            log.warning("%s/%s: %s", svc.namespace, svc.name, message)
            ref = _ref("Service", "v1", svc.namespace, svc.name)
            await self._event(ref, "Warning", "Reverted", message)
        outcomes = await asyncio.gather(*(self._remediate(plan.policy, j) for j in triage.jobs))
        held = dict(triage.held)
        pending = triage.pending  # writes whose events are still to come: the next pass
        for job, outcome in zip(triage.jobs, outcomes, strict=True):
            if isinstance(outcome, Rejection):
                held[job.service.name] = outcome.decision()
            elif outcome:
                pending += 1
        if pending:
            return False  # one status write once the dust settles, not one per pass
        settled = plan.with_overrides(held)
        self.summaries.setdefault(namespace, {})[plan.policy.name] = settled.summary()
        clean = not triage.jobs and not held
        if plan.policy.cluster:
            # One status across namespaces: written after the batch (write_cluster_statuses).
            self.cluster_parts.setdefault(plan.policy.name, {})[namespace] = settled
            self.cluster_dirty.add(plan.policy.name)
            return clean
        status = build_status(settled, cluster, admission=admission)
        return await self._write_status(plan.policy, status) and clean

    async def write_cluster_statuses(self) -> None:
        """Each cluster policy's status from its namespaces' last settled passes: those
        whose parts changed, or whose policy did (a new object in the index)."""
        current = {p.name: p for p in self.views.cluster_policy_list()}
        for gone in [n for n in self.cluster_parts if n not in current]:
            del self.cluster_parts[gone]
        cluster = list(self.views.cluster.families)
        dirty, self.cluster_dirty = self.cluster_dirty, set()
        for name, policy in current.items():
            if name not in dirty and self._cluster_seen.get(name) == (policy, tuple(cluster)):
                continue
            self._cluster_seen[name] = (policy, tuple(cluster))
            parts = self.cluster_parts.get(name, {})
            status = build_cluster_status(policy, parts, cluster, self.admission)
            await self._write_status(policy, status)

    async def _remediate(self, policy: PolicyView, job: Job) -> bool | Rejection:
        """True: accepted (or to be retried soon); False: moot; a Rejection: refused."""
        svc, patch = job.service, job.decision.patch
        assert patch is not None
        ref = _ref("Service", "v1", svc.namespace, svc.name)
        try:
            async with self.throttle.slot():
                if (wait := self.throttle.paused()) > 0:
                    self.queue.requeue_after(svc.namespace, wait)
                    return True  # the server is throttling us or away: not sent now
                with self.metrics.duration.labels("service").time():
                    await self.writer.patch_service(
                        svc.namespace, svc.name, _applied(patch, svc), svc.resource_version
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
            delay = self._failed(err)
            log.warning("%s/%s: %s (retry in %.0fs)", svc.namespace, svc.name, err, delay)
            self.queue.requeue_after(svc.namespace, delay)
            return True  # no status from a pass that could not finish its writes
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
        await self._event(ref, "Normal", "Remediated", message)
        return True

    async def _write_status(self, policy: PolicyView, status: dict[str, Any]) -> bool:
        """Writes the status if it differs; False when it could not be written now."""
        if not status_differs(policy.status, status):
            return True
        try:
            async with self.throttle.slot():
                if (wait := self.throttle.paused()) > 0:
                    self.queue.requeue_after(policy.namespace, wait)
                    return False
                if policy.cluster:
                    await self.writer.patch_cluster_policy_status(policy.name, status)
                else:
                    await self.writer.patch_policy_status(policy.namespace, policy.name, status)
        except NotFound:
            return True  # deleted meanwhile
        except ApiError as err:
            self.metrics.error("policy")
            delay = self._failed(err)
            log.warning("cannot write status of %s/%s: %s", policy.namespace, policy.name, err)
            self.queue.requeue_after(policy.namespace, delay)
            return False
        self.throttle.succeeded()
        old = {c.get("type"): c for c in policy.status.get("conditions") or []}
        ref = _policy_ref(policy)
        for cond in status.get("conditions", []):
            before = old.get(cond["type"])
            healthy = cond["status"] == "True"
            if before is None and healthy:
                continue  # a policy seen healthy at once: its conditions say so, quietly
            if before is None or before.get("reason") != cond["reason"]:
                kind = "Normal" if healthy else "Warning"
                await self._event(ref, kind, cond["reason"], cond["message"])
        return True

    def _failed(self, err: ApiError) -> float:
        """When to try a failed write again: after the shared pause for a throttled or
        failing server (every writer waits it out), else the usual retry."""
        if err.transient:
            return self.throttle.failed(err.status, err.retry_after)
        return self.settings.error_retry_seconds

    async def _event(self, ref: dict[str, str], type: str, reason: str, message: str) -> None:
        try:
            async with self.throttle.slot():
                await self.writer.post_event(ref, type, reason, message)
        except ApiError as err:  # Events are best effort: not retried, but they slow us too
            if err.transient:
                self.throttle.failed(err.status, err.retry_after)
            log.warning("cannot post event %s on %s/%s: %s", reason, ref["kind"], ref["name"], err)


async def work(reconciler: Reconciler, queue: WorkQueue, gate: PeeringGate, views: Views) -> None:
    """The worker: once the caches are complete, one batch of dirty namespaces at a time."""
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
        await asyncio.gather(*(reconciler.reconcile_guarded(ns) for ns in sorted(namespaces)))
        await reconciler.write_cluster_statuses()
        await reconciler.sync_shared_admission()
        if full:
            first = False
            log.info(
                "full pass: %d namespaces with policies, %d Services cached, %.2fs (%.2fs CPU)",
                len(views.policy_namespaces()),
                len(views.services),
                time.monotonic() - began,
                time.process_time() - cpu,
            )
