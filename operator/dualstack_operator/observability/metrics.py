"""Prometheus metrics (the contract in product.md), computed at scrape time.

Gauges come from what the last settled pass concluded per policy, the same
numbers its status shows; a policy that left the index takes its series with it.
Labels are bounded by namespaces x policies x reasons: never a Service name.
"""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dualstack_operator.api.models import DriftReason, IPFamily
from dualstack_operator.core.errors import ApiError
from dualstack_operator.core.plan import Summary
from dualstack_operator.core.views import PolicyView
from dualstack_operator.observability.metrics_auth import MetricsAuth

log = logging.getLogger("dualstack_operator.observability.metrics")

# Service patches take milliseconds; a policy pass over thousands of Services, seconds.
# dualstack_recreations_total's series, each exported from 0 for every policy.
RECREATION_SERIES = (
    ("success", "kept"),
    ("success", "new"),
    ("success", "none"),
    ("error", "none"),
)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class State(Protocol):
    """What the collector reads from the operator's runtime."""

    def policies(self) -> Iterable[PolicyView]: ...
    def summary(self, namespace: str, name: str) -> Summary | None: ...
    def cluster_families(self) -> list[IPFamily]: ...
    def cluster_dns_families(self) -> list[str] | None: ...


@dataclass
class Metrics:
    """The operator's registry: event-driven counters plus the scrape-time collector."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    remediations: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    recreations: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    reverts: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        # *_created series add cardinality and no insight; the function is untyped upstream.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.duration = Histogram(
            "dualstack_reconcile_duration_seconds",
            "Time to reconcile a policy (one pass) or a Service (one remediation).",
            ["kind"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        for kind in ("policy", "service"):
            self.duration.labels(kind)  # present from the start: no "No data"
        for kind in ("policy", "service", "admission"):
            self.errors[kind] += 0

    def bind(self, state: State) -> None:
        self.registry.register(_Collector(self, state))

    def timed(self, kind: str) -> AbstractContextManager[Any]:
        """Times one reconcile of ``kind`` (a policy pass, a Service write)."""
        return self.duration.labels(kind).time()

    def remediated(self, namespace: str, policy: str, ok: bool) -> None:
        self.remediations[(namespace, policy, "success" if ok else "error")] += 1

    def recreated(self, namespace: str, policy: str, ok: bool, addresses: str = "none") -> None:
        """``addresses``: kept (the surviving family's ClusterIP), new (it could not be
        kept; the Recreated event says why) or none (no family survives, or an error)."""
        result = "success" if ok else "error"
        self.recreations[(namespace, policy, result, addresses if ok else "none")] += 1

    def reverted(self, namespace: str, policy: str) -> None:
        self.reverts[(namespace, policy)] += 1

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


class _Collector(Collector):
    def __init__(self, metrics: Metrics, state: State) -> None:
        self.metrics = metrics
        self.state = state

    def collect(self) -> Iterator[Metric]:
        services = GaugeMetricFamily(
            "dualstack_services",
            "Services a policy governs, by state (excluded: ExternalName or opted out).",
            labels=["namespace", "policy", "state"],
        )
        drift = GaugeMetricFamily(
            "dualstack_service_drift",
            "Drifted Services by reason.",
            labels=["namespace", "policy", "reason"],
        )
        info = GaugeMetricFamily(
            "dualstack_policy_info",
            "A DualStackPolicy and its spec (always 1).",
            labels=["namespace", "policy", "ip_family_policy", "ip_families", "mode"],
        )
        remediations = CounterMetricFamily(
            "dualstack_remediations",
            "Service patches attempted, by whether the API server accepted them.",
            labels=["namespace", "policy", "result"],
        )
        recreations = CounterMetricFamily(
            "dualstack_recreations",
            "Services deleted and created again for their primary family "
            "(primaryFamilyChange: Recreate), by whether the new Service was created and "
            "whether it kept the surviving family's ClusterIP.",
            labels=["namespace", "policy", "result", "addresses"],
        )
        reverts = CounterMetricFamily(
            "dualstack_reverts",
            "Services that drifted again after the operator fixed them (someone reverted it).",
            labels=["namespace", "policy"],
        )
        present: set[tuple[str, str]] = set()
        for policy in self.state.policies():
            ns, name = policy.namespace, policy.name
            present.add((ns, name))
            spec = policy.spec
            if spec is not None:
                info.add_metric(
                    [
                        ns,
                        name,
                        str(spec.ip_family_policy),
                        ",".join(str(f) for f in spec.ip_families or []),
                        str(spec.mode),
                    ],
                    1,
                )
            for result in ("success", "error"):
                remediations.add_metric(
                    [ns, name, result], self.metrics.remediations[(ns, name, result)]
                )
            for result, addresses in RECREATION_SERIES:
                recreations.add_metric(
                    [ns, name, result, addresses],
                    self.metrics.recreations[(ns, name, result, addresses)],
                )
            reverts.add_metric([ns, name], self.metrics.reverts[(ns, name)])
            summary = self.state.summary(ns, name)
            if summary is None:
                continue  # not reconciled yet: no numbers rather than wrong ones
            services.add_metric([ns, name, "compliant"], summary.compliant)
            services.add_metric([ns, name, "drifted"], summary.drifted)
            services.add_metric([ns, name, "excluded"], summary.excluded)
            for reason in DriftReason:
                drift.add_metric([ns, name, str(reason)], summary.reasons.get(reason, 0))
        # Deleted policies' counters go with them.
        for counts in (self.metrics.remediations, self.metrics.recreations):
            for key in [k for k in counts if (k[0], k[1]) not in present]:
                del counts[key]
        for gone in [k for k in self.metrics.reverts if k not in present]:
            del self.metrics.reverts[gone]

        families = GaugeMetricFamily(
            "dualstack_cluster_ip_families",
            "IP families the cluster's service network offers (1) or lacks (0).",
            labels=["family"],
        )
        offered = self.state.cluster_families()
        for family in IPFamily:
            families.add_metric([str(family)], 1 if family in offered else 0)

        dns = GaugeMetricFamily(
            "dualstack_cluster_dns_ip_families",
            "IP families of the cluster DNS Service, kube-system/kube-dns (1) or not (0); "
            "none while it is not watched (ClusterDNSSingleStack when it lacks a family "
            "the cluster offers).",
            labels=["family"],
        )
        served = self.state.cluster_dns_families()
        if served is not None:
            for family in IPFamily:
                dns.add_metric([str(family)], 1 if str(family) in served else 0)

        errors = CounterMetricFamily(
            "dualstack_reconcile_errors",
            "Reconcile failures: a policy pass or a Service remediation that failed.",
            labels=["kind"],
        )
        for kind, count in sorted(self.metrics.errors.items()):
            errors.add_metric([kind], count)
        yield from (
            services,
            drift,
            info,
            remediations,
            recreations,
            reverts,
            families,
            dns,
            errors,
        )


async def serve(
    metrics: Metrics,
    address: str,
    port: int,
    ready: Callable[[], bool],
    auth: MetricsAuth | None = None,
    tls: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """/metrics on the event loop, so a scrape sees one consistent moment of state;
    /readyz answers 200 once the caches are complete (the readiness probe). With
    ``auth``, /metrics needs a token the API server lets get it (401/403 otherwise)."""

    async def handle(request: web.Request) -> web.Response:
        if auth is not None:
            try:
                verdict = await auth.check(request.headers.get("Authorization"), "/metrics")
            except ApiError as err:
                log.warning("cannot review a /metrics token: %s", err)
                return web.Response(status=503, text="cannot review the token now")
            if verdict.status != 200:
                return web.Response(status=verdict.status, text=verdict.reason)
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="the Service and policy caches are filling")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # No address: aiohttp listens on every address of both families (IPv4 and IPv6).
    await web.TCPSite(runner, address or None, port, ssl_context=tls).start()
    scheme = "https" if tls else "http"
    log.info(
        "serving metrics on %s://%s:%d/metrics%s",
        scheme,
        address or "*",
        port,
        " (TokenReview and SubjectAccessReview)" if auth else "",
    )
    return runner
