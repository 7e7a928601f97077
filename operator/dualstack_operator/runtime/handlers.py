"""Kopf wiring only: startup and cleanup, peering, the admission server.

No object passes through kopf's per-object machinery (no index, event, change
handler, timer or daemon): Services, policies and namespaces are the operator's own
reflectors', so kopf stores nothing on any of them, and its start does not grow with
their number. The components are built here at startup and stopped at cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web

from dualstack_operator.admission.configuration import CONFIGURATION_NAME, WebhookOptions
from dualstack_operator.api import names
from dualstack_operator.api.models import Admission
from dualstack_operator.engine.cache import Views
from dualstack_operator.kube.admission import AdmissionCalls
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.peering import PeeringCalls
from dualstack_operator.kube.reviews import Reviews
from dualstack_operator.kube.transport import Transport
from dualstack_operator.observability import health
from dualstack_operator.observability import metrics as metrics_server
from dualstack_operator.observability.metrics import Metrics
from dualstack_operator.observability.metrics_auth import MetricsAuth
from dualstack_operator.observability.tls import ServerTLS, metrics_tls
from dualstack_operator.runtime.components import Components, Ports, build_components
from dualstack_operator.runtime.settings import Settings

log = logging.getLogger("dualstack_operator")


@dataclass
class App:
    """The operator's components (kopf's memo holds it as ``app``)."""

    settings: Settings
    transport: Transport = field(default_factory=Transport)
    metrics: Metrics = field(default_factory=Metrics)
    components: Components | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    metrics_runner: web.AppRunner | None = None
    liveness_runner: web.AppRunner | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)  # the webhook waits for it
    webhook: WebhookOptions | None = None  # when the operator serves the webhook

    @property
    def client(self) -> Client:
        return Client(self.transport)

    @property
    def views(self) -> Views | None:
        return self.components.views if self.components else None

    @property
    def configurations(self) -> AdmissionCalls:
        return AdmissionCalls(self.client)

    def stopped(self) -> list[str]:
        """The component loops that ended: the liveness probe fails on any, since every
        loop runs for the life of the operator."""
        return [task.get_name() for task in self.tasks if task.done()]

    async def start(self) -> None:
        settings = self.settings
        if settings.liveness_port and self.liveness_runner is None:  # kopf retries a start
            self.liveness_runner = await health.serve_liveness(
                settings.metrics.address, settings.liveness_port, self.stopped
            )
        # The watches kept open: Services, EndpointSlices, policies and NetworkPolicies per
        # watched namespace (or for all of them); cluster policies, namespaces, ServiceCIDRs.
        await self.transport.connect(watches=4 * (len(settings.namespaces) or 1) + 3)
        client = self.client
        ports = Ports.over(client)
        if settings.peering:
            await PeeringCalls(client).ensure_peering(settings.peering.name, settings.namespaces)
        self.components = c = build_components(settings, ports, self.metrics)
        await c.views.cluster.refresh(ports.services)
        if settings.admission == Admission.POLICY and not settings.namespaces:
            # The native policies replace the webhook: a configuration of ours left by
            # an earlier --admission=webhook would only call a server nobody runs.
            await AdmissionCalls(client).delete_webhook_configuration(CONFIGURATION_NAME)
        self.tasks = [
            asyncio.create_task(loop, name=name) for name, loop in c.loops(ports.services)
        ]
        for task in self.tasks:
            task.add_done_callback(_report_crash)
        if settings.metrics.port:
            self.metrics.bind(c.reconciler)
            secure = settings.metrics.secure
            tls = metrics_tls(settings.metrics.cert_dir) if secure else None
            if tls is not None:
                self._task("dualstack metrics certificate", tls.watch())
            self.metrics_runner = await metrics_server.serve(
                self.metrics,
                settings.metrics.address,
                settings.metrics.port,
                c.ready,
                auth=MetricsAuth(Reviews(client)) if secure else None,
                tls=tls.context if tls is not None else None,
            )
        self.started.set()

    def _task(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(loop, name=name)
        task.add_done_callback(_report_crash)
        self.tasks.append(task)

    def server_tls(self, hosts: Sequence[str], cert_dir: Path | None) -> ServerTLS:
        """A server certificate that follows its renewals (the webhook's), watched here."""
        tls = (
            ServerTLS.from_dir(cert_dir)
            if cert_dir
            else ServerTLS.self_signed(hosts, "dualstack-webhook-")
        )
        self._task("dualstack webhook certificate", tls.watch())
        return tls

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.components is not None:
            self.components.queue.close()
        for runner in (self.metrics_runner, self.liveness_runner):
            if runner is not None:
                await runner.cleanup()
        await self.transport.close()


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


@kopf.on.startup()
async def startup(memo: kopf.Memo, settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    app: App = memo["app"]
    configure(settings, app)
    await app.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    app: App = memo["app"]
    await app.stop()
