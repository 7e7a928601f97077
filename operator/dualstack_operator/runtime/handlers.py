"""Kopf wiring only: policies, startup and cleanup, probes, peering, the admission server.

Services never pass through kopf (no index, event, change handler, timer or
daemon on them), so kopf stores nothing on Services; policies are observed
through an index and an event handler only, so nothing is stored on them either.
The components are built here at startup and stopped at cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web

from dualstack_operator.admission.configuration import CONFIGURATION_NAME
from dualstack_operator.admission.native import NativeAdmission
from dualstack_operator.api import names
from dualstack_operator.api.models import Admission
from dualstack_operator.core.errors import waiting_out_429
from dualstack_operator.core.views import PolicyView
from dualstack_operator.engine.cache import ClusterFamilies, ServiceCache, SliceCache, Views
from dualstack_operator.engine.peering import PeeringGate
from dualstack_operator.engine.queue import WorkQueue
from dualstack_operator.engine.reconciler import Reconciler, work
from dualstack_operator.engine.recreation import Recreator
from dualstack_operator.kube.client import KubeAPI
from dualstack_operator.observability import metrics as metrics_server
from dualstack_operator.observability.metrics import Metrics
from dualstack_operator.observability.metrics_auth import MetricsAuth
from dualstack_operator.observability.tls import metrics_tls
from dualstack_operator.runtime.settings import Settings

log = logging.getLogger("dualstack_operator")

StartupHook = Callable[[kopf.OperatorSettings, "App"], Awaitable[None]]


@dataclass
class App:
    """The operator's components (kopf's memo holds it as ``app``)."""

    settings: Settings
    api: KubeAPI = field(default_factory=KubeAPI)
    metrics: Metrics = field(default_factory=Metrics)
    # Extra startup steps (the admission webhook), run once the API is connected.
    startup_hooks: list[StartupHook] = field(default_factory=list)
    views: Views | None = None
    gate: PeeringGate | None = None  # whether this replica is the active one
    queue: WorkQueue | None = None
    reconciler: Reconciler | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    metrics_runner: web.AppRunner | None = None

    def mark(self, namespace: str) -> None:
        if self.queue is not None:
            self.queue.mark(namespace)

    def mark_policies(self) -> None:
        """Every namespace with a policy (a new cluster shape, a takeover)."""
        if self.queue is not None and self.views is not None:
            self.queue.mark_many(self.views.policy_namespaces())

    def mark_all(self) -> None:
        """Every namespace a policy governs or did (a cluster policy changed)."""
        if self.queue is not None and self.views is not None:
            self.queue.mark_many(self.views.policy_namespaces())
            if self.reconciler is not None:
                self.queue.mark_many(self.reconciler.cluster_namespaces())

    async def start(
        self,
        policies: kopf.Index[str, PolicyView],
        cluster_policies: kopf.Index[str, PolicyView],
        namespaces: kopf.Index[str, dict[str, str]],
    ) -> None:
        settings = self.settings
        # Two watches per watched namespace (or for all of them): Services, EndpointSlices.
        await self.api.connect(watches=2 * (len(settings.namespaces) or 1))
        if settings.peering:
            await self.api.ensure_peering(settings.peering.name, settings.namespaces)
        rec = settings.reconcile
        self.queue = queue = WorkQueue(rec.coalesce_seconds, rec.resync_seconds)
        services = ServiceCache(self.api, settings.cache, settings.namespaces, queue.mark)
        slices = SliceCache(self.api, settings.cache, settings.namespaces, queue.mark)
        self.views = views = Views(
            services,
            ClusterFamilies(),
            policies,
            cluster_policies=cluster_policies,
            namespace_labels=namespaces,
            own_namespace=settings.journal_namespace,
            watched=settings.namespaces,
            slices=slices,
        )
        await views.cluster.refresh(self.api)
        if not await waiting_out_429(lambda: self.api.any_policies(settings.namespaces), 30):
            # Kopf calls no handler when there is no policy: nothing marks them known.
            views.policies_ready.set()
        native = NativeAdmission(
            self.api, settings.admission == Admission.POLICY, settings.namespaces
        )
        if settings.admission == Admission.POLICY and not settings.namespaces:
            # The native policies replace the webhook: a configuration of ours left by
            # an earlier --admission=webhook would only call a server nobody runs.
            await self.api.delete_webhook_configuration(CONFIGURATION_NAME)
        self.reconciler = Reconciler(
            rec,
            views,
            self.api,
            self.metrics,
            queue,
            admission=settings.admission,
            native=native,
            recreator=Recreator(self.api, settings.journal_namespace),
        )
        self.gate = gate = PeeringGate(
            settings.peering, settings.namespaces, self.api, self.mark_policies
        )
        self.tasks = [
            asyncio.create_task(services.run(), name="dualstack Service cache"),
            asyncio.create_task(slices.run(), name="dualstack EndpointSlice cache"),
            asyncio.create_task(
                views.cluster.keep_checking(
                    self.api, rec.cluster_recheck_seconds, self.mark_policies
                ),
                name="dualstack cluster families",
            ),
            asyncio.create_task(
                work(self.reconciler, queue, gate, views), name="dualstack reconciler"
            ),
        ]
        for task in self.tasks:
            task.add_done_callback(_report_crash)
        if settings.metrics.port:
            self.metrics.bind(self.reconciler)
            secure = settings.metrics.secure
            self.metrics_runner = await metrics_server.serve(
                self.metrics,
                settings.metrics.address,
                settings.metrics.port,
                lambda: (
                    services.synced.is_set()
                    and slices.synced.is_set()
                    and views.policies_ready.is_set()
                ),
                auth=MetricsAuth(self.api) if secure else None,
                tls=metrics_tls(settings.metrics.cert_dir) if secure else None,
            )

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.queue is not None:
            self.queue.close()
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()
        await self.api.close()


def _report_crash(task: asyncio.Task[None]) -> None:
    """A component loop that ends other than by cancellation is a bug: say so loudly."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())


def configure(settings: kopf.OperatorSettings, app: App) -> None:
    """Kopf's own storage under our prefix, quiet posting, sane watch timeouts."""
    settings.persistence.finalizer = f"{names.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # our own Events, on our own terms
    cache = app.settings.cache
    settings.watching.server_timeout = cache.watch_timeout_seconds
    settings.watching.client_timeout = cache.watch_silence_seconds
    if app.settings.peering:
        settings.peering.lifetime = app.settings.peering.lifetime


@kopf.index(names.GROUP, names.VERSION, names.PLURAL)
def policies_idx(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, PolicyView]:
    """DualStackPolicies by namespace, as the few fields a pass reads."""
    return {namespace or "": PolicyView.from_body(body)}


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
def policy_event(namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    app: App = memo["app"]
    if app.views is not None:
        # Kopf calls handlers only once its indexes are complete: the policies are known.
        app.views.policies_ready.set()
    app.mark(namespace or "")


@kopf.index(names.GROUP, names.VERSION, names.CLUSTER_PLURAL)
def cluster_policies_idx(body: kopf.Body, **_: Any) -> dict[str, PolicyView]:
    """ClusterDualStackPolicies, all under the key ""."""
    return {"": PolicyView.from_body(body, cluster=True)}


@kopf.on.event(names.GROUP, names.VERSION, names.CLUSTER_PLURAL)
def cluster_policy_event(memo: kopf.Memo, **_: Any) -> None:
    app: App = memo["app"]
    if app.views is not None:
        app.views.policies_ready.set()
    app.mark_all()


@kopf.index("", "v1", "namespaces")
def namespaces_idx(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict[str, str]]:
    """Namespaces' labels, for cluster policies' namespaceSelectors."""
    return {name: dict(labels)}


@kopf.on.event("", "v1", "namespaces")
def namespace_event(name: str, memo: kopf.Memo, **_: Any) -> None:
    """A namespace's labels may bring it under a cluster policy or take it away."""
    app: App = memo["app"]
    if app.views is not None and app.views.cluster_policy_list():
        app.mark(name)


@kopf.on.probe(id="components")
def components(memo: kopf.Memo, **_: Any) -> str:
    """Liveness: a component loop that stopped fails the probe, so the pod is restarted."""
    app: App = memo["app"]
    stopped = [task.get_name() for task in app.tasks if task.done()]
    if stopped:
        raise kopf.PermanentError(f"stopped: {', '.join(stopped)}")
    return "running"


@kopf.on.startup()
async def startup(memo: kopf.Memo, settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    app: App = memo["app"]
    configure(settings, app)
    # The indexes are live views, kept up to date by kopf's watchers.
    await app.start(
        kwargs["policies_idx"], kwargs["cluster_policies_idx"], kwargs["namespaces_idx"]
    )
    for hook in app.startup_hooks:
        await hook(settings, app)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    app: App = memo["app"]
    await app.stop()
