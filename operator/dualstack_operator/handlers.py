"""Kopf wiring: Services and policies are observed through indexes and event handlers.

Nothing here uses change handlers, timers or daemons on Services, so kopf stores
no annotations or finalizers on them. Policies are not handled by kopf's change
machinery either: one worker reconciles dirty namespaces, level-based, from the
indexes, coalescing bursts of events into one pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dualstack_operator import models
from dualstack_operator.decision import Decision, ServiceView, State
from dualstack_operator.kubeapi import ApiError, KubeAPI
from dualstack_operator.metrics import Metrics
from dualstack_operator.models import DriftReason, IPFamily
from dualstack_operator.plan import (
    PolicyPlan,
    PolicyView,
    Summary,
    build_status,
    plan_namespace,
    status_differs,
)

log = logging.getLogger("dualstack_operator")

COALESCE_SECONDS = 0.3  # events closer than this share one pass
RESYNC_SECONDS = 300.0  # full pass even without events (a missed event heals)
CLUSTER_RECHECK_SECONDS = 60.0
WRITE_CONCURRENCY = 16
REJECT_BACKOFF = (10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class Rejection:
    resource_version: str
    message: str
    retry_at: float
    attempts: int


@dataclass
class Runtime:
    """Operator state shared by the handlers and the worker (kopf's memo)."""

    api: KubeAPI
    cluster_recheck_seconds: float = CLUSTER_RECHECK_SECONDS
    services: kopf.Index[str, ServiceView] | None = None
    policies_index: kopf.Index[str, PolicyView] | None = None
    cluster: list[IPFamily] = field(default_factory=list)
    cluster_checked: float = 0.0
    dirty: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    indexed: asyncio.Event = field(default_factory=asyncio.Event)
    # Services we patched, by the resourceVersion we patched *from*: while the index
    # still shows that version, our write has not reached it and must not be repeated.
    inflight: dict[tuple[str, str], str] = field(default_factory=dict)
    rejections: dict[tuple[str, str], Rejection] = field(default_factory=dict)
    worker: asyncio.Task[None] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    metrics_address: str = "0.0.0.0"  # noqa: S104 - scraped from outside the pod
    metrics_port: int = 0  # 0: no metrics endpoint
    metrics_server: web.AppRunner | None = None
    # Kopf peering: the object replicas meet in (None: standalone, one replica).
    peering: str | None = None
    identity: str = ""
    priority: int = 0
    peering_lifetime: int = 60
    namespaces: tuple[str, ...] = ()
    active_checked: float = 0.0
    active: bool = True
    # Extra startup steps (the admission webhook), run once the API is connected.
    startup_hooks: list[Callable[[kopf.OperatorSettings, Runtime], Awaitable[None]]] = field(
        default_factory=list
    )
    # What the last settled pass concluded per policy: the numbers of its status.
    summaries: dict[tuple[str, str], Summary] = field(default_factory=dict)
    # Concurrent Service patches across all namespaces (the API server's own
    # priority and fairness queues the rest).
    write_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(WRITE_CONCURRENCY)
    )
    last_full_pass: float = field(default_factory=time.monotonic)

    def mark(self, namespace: str) -> None:
        self.dirty.add(namespace)
        self.wake.set()

    # The metrics collector's view (metrics.State).
    def policies(self) -> Iterator[PolicyView]:
        index = self.policies_index
        for namespace in list(index or {}):
            yield from list(index[namespace]) if index else []

    def summary(self, namespace: str, name: str) -> Summary | None:
        return self.summaries.get((namespace, name))

    def cluster_families(self) -> list[IPFamily]:
        return list(self.cluster)


def configure(settings: kopf.OperatorSettings, runtime: Runtime) -> None:
    """Kopf's own storage under our prefix, quiet posting, sane watch timeouts."""
    settings.persistence.finalizer = f"{models.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=models.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=models.GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # our own Events, on our own terms
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.peering.lifetime = runtime.peering_lifetime


# --- indexes and events ---------------------------------------------------------------------


@kopf.index("", "v1", "services")
def services_idx(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, ServiceView]:
    """Services by namespace, reduced to the fields the decision needs."""
    return {namespace or "": ServiceView.from_body(body)}


@kopf.index(models.GROUP, models.VERSION, models.PLURAL)
def policies_idx(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, PolicyView]:
    return {namespace or "": PolicyView.from_body(body)}


@kopf.on.event("", "v1", "services")
def service_event(namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    runtime.indexed.set()  # kopf runs handlers only once every index is pre-populated
    runtime.mark(namespace or "")


@kopf.on.event(models.GROUP, models.VERSION, models.PLURAL)
def policy_event(namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    runtime.indexed.set()
    runtime.mark(namespace or "")


@kopf.on.startup()
async def startup(memo: kopf.Memo, settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    runtime: Runtime = memo["runtime"]
    configure(settings, runtime)
    # The indexes are live views, handed to every handler; the worker keeps them.
    runtime.services, runtime.policies_index = kwargs["services_idx"], kwargs["policies_idx"]
    await runtime.api.connect()
    if runtime.peering:
        await runtime.api.ensure_peering(runtime.peering, runtime.namespaces)
    await refresh_cluster(runtime, force=True)
    for hook in runtime.startup_hooks:
        await hook(settings, runtime)
    if runtime.metrics_port:
        runtime.metrics.bind(runtime)
        runtime.metrics_server = await serve_metrics(
            runtime.metrics, runtime.metrics_address, runtime.metrics_port
        )
    runtime.worker = asyncio.create_task(worker(runtime), name="dualstack reconciler")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    if runtime.worker is not None:
        runtime.worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runtime.worker
    if runtime.metrics_server is not None:
        await runtime.metrics_server.cleanup()
    await runtime.api.close()


async def serve_metrics(metrics: Metrics, address: str, port: int) -> web.AppRunner:
    """/metrics on the event loop, so a scrape sees one consistent moment of state."""

    async def handle(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    log.info("serving metrics on http://%s:%d/metrics", address, port)
    return runner


# --- the worker -----------------------------------------------------------------------------


async def refresh_cluster(runtime: Runtime, force: bool = False) -> None:
    """ServiceCIDR API first; a server-side dry-run probe where it is missing."""
    if not force and time.monotonic() - runtime.cluster_checked < runtime.cluster_recheck_seconds:
        return
    families = await runtime.api.service_cidr_families()
    if not families:
        families = await runtime.api.probe_families()
    runtime.cluster_checked = time.monotonic()
    if families != runtime.cluster:
        log.info("cluster service network offers %s", [str(f) for f in families])
        runtime.cluster = families
        for namespace in list(runtime.policies_index or {}):
            runtime.mark(namespace)


async def is_active(runtime: Runtime) -> bool:
    """Whether this replica may write: kopf's peering rule, read from the same object.

    Kopf pauses its watches while a live peer has a higher (or equal) priority; our
    worker runs beside kopf, so it applies the same rule before every pass.
    """
    if not runtime.peering:
        return True
    if time.monotonic() - runtime.active_checked < 1.0:
        return runtime.active
    try:
        peers = await runtime.api.read_peers(runtime.peering, runtime.namespaces)
    except Exception as err:
        log.warning(
            "cannot read the peering object: %s; staying %s",
            err,
            "active" if runtime.active else "paused",
        )
        return runtime.active
    now = datetime.datetime.now(datetime.UTC)
    rivals = [
        p
        for ident, p in peers.items()
        if ident != runtime.identity
        and p["priority"] >= runtime.priority
        and p["lastseen"] + datetime.timedelta(seconds=p["lifetime"]) > now
    ]
    active = not rivals
    if active != runtime.active:
        log.info("peering: this replica is now %s", "active" if active else "standby")
        if active:
            for namespace in list(runtime.policies_index or {}):
                runtime.mark(namespace)
    runtime.active, runtime.active_checked = active, time.monotonic()
    return active


async def worker(runtime: Runtime) -> None:
    await runtime.indexed.wait()
    while True:
        timeout = min(RESYNC_SECONDS, runtime.cluster_recheck_seconds)
        try:
            await asyncio.wait_for(runtime.wake.wait(), timeout=timeout)
        except TimeoutError:
            if time.monotonic() - runtime.last_full_pass >= RESYNC_SECONDS:
                runtime.last_full_pass = time.monotonic()
                for namespace in list(runtime.policies_index or {}):
                    runtime.mark(namespace)
        await asyncio.sleep(COALESCE_SECONDS)  # let a burst of events land in one pass
        runtime.wake.clear()
        batch, runtime.dirty = runtime.dirty, set()
        if not await is_active(runtime):
            runtime.dirty |= batch  # a standby replica: kopf's peering pauses us
            continue
        try:
            await refresh_cluster(runtime)
        except Exception as err:  # a restarting API server, say: keep the last answer
            log.warning("cannot re-check the cluster's families: %s", err)
        await asyncio.gather(*(_reconcile_guarded(runtime, ns) for ns in sorted(batch)))


async def _reconcile_guarded(runtime: Runtime, namespace: str) -> None:
    try:
        await reconcile_namespace(runtime, namespace)
    except Exception:
        runtime.metrics.error("policy")
        log.exception("reconciling namespace %s failed; retrying in 5s", namespace)
        asyncio.get_running_loop().call_later(5.0, runtime.mark, namespace)


def _ref(kind: str, api_version: str, namespace: str, name: str, uid: str = "") -> dict[str, str]:
    ref = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    if uid:
        ref["uid"] = uid
    return ref


async def _event(runtime: Runtime, ref: dict[str, str], type: str, reason: str, msg: str) -> None:
    try:
        await runtime.api.post_event(ref, type, reason, msg)
    except ApiError as err:
        log.warning("cannot post event %s on %s/%s: %s", reason, ref["kind"], ref["name"], err)


async def reconcile_namespace(runtime: Runtime, namespace: str) -> None:
    index = runtime.policies_index
    policies = list(index[namespace]) if index and namespace in index else []
    names = {p.name for p in policies}
    gone = [k for k in runtime.summaries if k[0] == namespace and k[1] not in names]
    for key in gone:
        del runtime.summaries[key]  # a deleted policy's numbers go with it
    if not policies:
        if gone:
            log.info(
                "namespace %s has no DualStackPolicy any more; its Services are left as they are",
                namespace,
            )
        return  # nothing is rolled back
    in_ns = (
        runtime.services[namespace] if runtime.services and namespace in runtime.services else []
    )
    services = {s.name: s for s in in_ns}
    now = time.monotonic()
    for plan in plan_namespace(policies, services.values(), runtime.cluster):
        with runtime.metrics.duration.labels("policy").time():
            await _reconcile_policy(runtime, plan, services, now)


async def _reconcile_policy(
    runtime: Runtime, plan: PolicyPlan, services: dict[str, ServiceView], now: float
) -> None:
    namespace = plan.policy.namespace
    pending = 0  # writes whose events are still to come: they bring the next pass
    jobs: list[tuple[ServiceView, Decision, Rejection | None]] = []
    for name, decision in list(plan.decisions.items()):
        svc = services[name]
        key = (namespace, name)
        if runtime.inflight.get(key) == svc.resource_version:
            pending += 1  # our own write has not reached the index yet
            continue
        runtime.inflight.pop(key, None)
        rejection = runtime.rejections.get(key)
        if rejection and rejection.resource_version != svc.resource_version:
            del runtime.rejections[key]  # the Service changed: judge it afresh
            rejection = None
        if decision.patch is None:
            continue
        if rejection and now < rejection.retry_at:
            plan.decisions[name] = Decision(
                State.DRIFTED, DriftReason.PATCH_REJECTED, rejection.message
            )
            continue
        jobs.append((svc, decision, rejection))
    results = await asyncio.gather(
        *(_remediate(runtime, plan.policy, svc, d, r) for svc, d, r in jobs)
    )
    for (svc, _, _), accepted in zip(jobs, results, strict=True):
        key = (namespace, svc.name)
        if accepted:
            pending += 1
        elif key in runtime.rejections:
            plan.decisions[svc.name] = Decision(
                State.DRIFTED, DriftReason.PATCH_REJECTED, runtime.rejections[key].message
            )
    if pending:
        return  # one status write once the dust settles, not one per pass
    runtime.summaries[(namespace, plan.policy.name)] = plan.summary()
    await _write_status(runtime, plan.policy, build_status(plan, runtime.cluster))


async def _remediate(
    runtime: Runtime,
    policy: PolicyView,
    svc: ServiceView,
    decision: Decision,
    rejection: Rejection | None,
) -> bool:
    assert decision.patch is not None
    key = (svc.namespace, svc.name)
    ref = _ref("Service", "v1", svc.namespace, svc.name)
    try:
        async with runtime.write_slots:
            with runtime.metrics.duration.labels("service").time():
                await runtime.api.patch_service(
                    svc.namespace, svc.name, decision.patch, svc.resource_version
                )
    except ApiError as err:
        if err.status in (404, 409):
            return False  # deleted or changed meanwhile: its event brings a new pass
        runtime.metrics.remediated(svc.namespace, policy.name, ok=False)
        runtime.metrics.error("service")
        attempts = (rejection.attempts + 1) if rejection else 1
        delay = REJECT_BACKOFF[min(attempts, len(REJECT_BACKOFF)) - 1]
        message = f"the API server rejected {decision.patch['spec']}: {err.message}"
        runtime.rejections[key] = Rejection(
            svc.resource_version, message, time.monotonic() + delay, attempts
        )
        asyncio.get_running_loop().call_later(delay, runtime.mark, svc.namespace)
        log.warning("%s/%s: %s (retry in %.0fs)", svc.namespace, svc.name, message, delay)
        if rejection is None:
            await _event(runtime, ref, "Warning", "PatchRejected", message)
        return False
    runtime.inflight[key] = svc.resource_version
    runtime.rejections.pop(key, None)
    runtime.metrics.remediated(svc.namespace, policy.name, ok=True)
    spec = decision.patch["spec"]
    message = (
        f"policy {policy.name}: ipFamilyPolicy {svc.ip_family_policy} -> {spec['ipFamilyPolicy']}"
        + (
            f", ipFamilies {list(svc.ip_families)} -> {spec['ipFamilies']}"
            if "ipFamilies" in spec
            else ""
        )
    )
    log.info("%s/%s remediated: %s", svc.namespace, svc.name, message)
    await _event(runtime, ref, "Normal", "Remediated", message)
    return True


async def _write_status(runtime: Runtime, policy: PolicyView, status: dict[str, Any]) -> None:
    if not status_differs(policy.status, status):
        return
    try:
        await runtime.api.patch_policy_status(policy.namespace, policy.name, status)
    except ApiError as err:
        if err.status != 404:
            runtime.metrics.error("policy")
            log.warning("cannot write status of %s/%s: %s", policy.namespace, policy.name, err)
        return
    old = {c.get("type"): c for c in policy.status.get("conditions") or []}
    ref = _ref(
        models.KIND, f"{models.GROUP}/{models.VERSION}", policy.namespace, policy.name, policy.uid
    )
    for cond in status.get("conditions", []):
        before = old.get(cond["type"])
        if before is None or before.get("reason") != cond["reason"]:
            healthy = cond["status"] == "True"
            await _event(
                runtime, ref, "Normal" if healthy else "Warning", cond["reason"], cond["message"]
            )
