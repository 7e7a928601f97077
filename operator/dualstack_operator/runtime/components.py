"""The operator's components, built one way for the kopf app and for the engine tests.

``Ports`` are the API calls each component makes: the kube layer's adapters over one
transport, or one recording fake standing for all of them in the engine tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dualstack_operator.admission.native import AdmissionStore, NativeAdmission
from dualstack_operator.api.models import Admission
from dualstack_operator.api.names import DNS_NAMESPACE
from dualstack_operator.core.views import PolicyView, ServiceView
from dualstack_operator.engine.cache import (
    ClusterFamilies,
    FamilySource,
    Grouped,
    Labels,
    Reflector,
    ServiceCache,
    SliceCache,
    Views,
)
from dualstack_operator.engine.clock import Clock, LoopClock
from dualstack_operator.engine.peering import PeeringGate, PeerReader
from dualstack_operator.engine.ports import MetricsSink
from dualstack_operator.engine.queue import WorkQueue
from dualstack_operator.engine.reconciler import Reconciler, Writer, work
from dualstack_operator.engine.recreation import RecreateStore, Recreator
from dualstack_operator.kube.admission import AdmissionCalls
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.events import EventRecorder
from dualstack_operator.kube.journal import RecreationCalls
from dualstack_operator.kube.peering import PeeringCalls
from dualstack_operator.kube.policies import PolicyCalls
from dualstack_operator.kube.resources import (
    CLUSTER_POLICIES,
    NAMESPACES,
    NETWORK_POLICIES,
    POLICIES,
    SERVICE_CIDR_RANGES,
)
from dualstack_operator.kube.services import ServiceCalls
from dualstack_operator.runtime.settings import Settings


class Writes(ServiceCalls, PolicyCalls, EventRecorder):
    """Every write a pass makes, over one client (the reconciler's ``Writer``)."""

    def __init__(self, client: Client) -> None:
        self.client = client


@dataclass(frozen=True)
class Ports:
    services: Any  # ServiceSource, SliceSource and FamilySource
    writes: Writer
    admission: AdmissionStore
    recreation: RecreateStore
    peering: PeerReader
    client: Client | None = None  # for the policy and namespace reflectors (None: a fake)

    @classmethod
    def over(cls, client: Client) -> Ports:
        """The kube layer's adapters over one client."""
        return cls(
            ServiceCalls(client),
            Writes(client),
            AdmissionCalls(client),
            RecreationCalls(client),
            PeeringCalls(client),
            client,
        )


@dataclass
class Components:
    settings: Settings
    queue: WorkQueue
    views: Views
    reconciler: Reconciler
    gate: PeeringGate
    caches: list[Reflector[Any]] = field(default_factory=list)
    _dns_families: tuple[str, ...] = ()  # the cluster DNS Service's, as last seen

    def loops(self, families: FamilySource) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The component loops, by name, to run as tasks."""
        views, rec = self.views, self.settings.reconcile
        out: list[tuple[str, Coroutine[Any, Any, None]]] = [
            (f"dualstack {c.what} cache", c.run()) for c in self.caches
        ]
        out += [
            (
                "dualstack cluster families",
                views.cluster.keep_checking(families, rec.cluster_recheck_seconds, self.mark_all),
            ),
            ("dualstack reconciler", self._work()),
        ]
        return out

    async def _work(self) -> None:
        """The worker, once every cache has listed once (then the policies are known).
        Every loop the liveness probe watches runs for the life of the operator."""
        await _all_synced(self.caches, self.views.policies_ready)
        await work(self.reconciler, self.queue, self.gate, self.views)

    def ready(self) -> bool:
        """Every cache listed once: /readyz answers 200."""
        return all(c.synced.is_set() for c in self.caches) and self.views.policies_ready.is_set()

    def mark_policies(self) -> None:
        """Every namespace with a policy (a new cluster shape, a takeover)."""
        self.queue.mark_many(self.views.policy_namespaces())

    def mark_all(self) -> None:
        """Every namespace a policy governs or did (a cluster policy changed)."""
        self.queue.mark_many(self.views.policy_namespaces())
        self.queue.mark_many(self.reconciler.cluster_namespaces())

    def cidrs_changed(self) -> None:
        """A ServiceCIDR changed: the families are looked at again now."""
        self.views.cluster.nudge()

    def service_changed(self, namespace: str) -> None:
        """A Service changed: its namespace gets a pass; and when the cluster DNS Service's
        families changed, every policy's namespace (its ClusterDNS condition)."""
        self.queue.mark(namespace)
        if namespace != DNS_NAMESPACE:
            return
        dns = self.views.cluster_dns()
        families = dns.ip_families if isinstance(dns, ServiceView) else ()
        if families != self._dns_families:
            self._dns_families = families
            self.mark_all()

    def namespace_changed(self, name: str) -> None:
        """A namespace's labels may bring it under a cluster policy or take it away."""
        if self.views.cluster_policy_list():
            self.queue.mark(name)


def build_components(
    settings: Settings,
    ports: Ports,
    metrics: MetricsSink,
    clock: Clock | None = None,
    policies: tuple[
        Mapping[str, Iterable[PolicyView]],
        Mapping[str, Iterable[PolicyView]],
        Mapping[str, Iterable[Mapping[str, str]]],
    ]
    | None = None,
) -> Components:
    """The queue, caches, views, reconciler and gate. ``policies`` (policies, cluster
    policies, namespaces' labels) stand in for their reflectors in the engine tests."""
    rec, cache, watched = settings.reconcile, settings.cache, settings.namespaces
    clock = clock or LoopClock()
    queue = WorkQueue(rec.coalesce_seconds, rec.resync_seconds, clock)
    components: Components | None = None

    def later(method: str) -> Callable[[str], None]:
        return lambda ns: getattr(components, method)(ns) if components else None

    services = ServiceCache(ports.services, cache, watched, later("service_changed"))
    slices = SliceCache(ports.services, cache, watched, queue.mark)
    caches: list[Reflector[Any]] = [services, slices]
    families = ClusterFamilies()
    network_policies = None

    if policies is None:
        client = ports.client
        assert client is not None, "the policy and namespace reflectors need a client"
        # Policies and namespaces by reflectors of our own too: kopf's indexes fill in a
        # time that grows with the square of the objects (10,000 namespaces never do).
        own = Reflector(
            client.lister(POLICIES), client.watcher(POLICIES), cache, watched, queue.mark,
            what="DualStackPolicies",
        )  # fmt: skip
        cluster = Reflector(
            client.lister(CLUSTER_POLICIES), client.watcher(CLUSTER_POLICIES), cache, (),
            lambda _: components.mark_all() if components else None,
            what="ClusterDualStackPolicies", optional=True,
        )  # fmt: skip
        namespaces = Reflector(
            client.lister(NAMESPACES), client.watcher(NAMESPACES), cache, (),
            later("namespace_changed"), what="namespaces",
        )  # fmt: skip
        # The cluster's families: watched, so that a conversion is acted on at once.
        cidrs = Reflector(
            client.lister(SERVICE_CIDR_RANGES), client.watcher(SERVICE_CIDR_RANGES), cache, (),
            lambda _: components.cidrs_changed() if components else None,
            what="ServiceCIDRs", optional=True,
        )  # fmt: skip
        # NetworkPolicies, for readiness (NetworkPolicyOneFamily): one lean watch, as
        # for Services; a change brings a pass of its namespace.
        network_policies = Reflector(
            client.lister(NETWORK_POLICIES), client.watcher(NETWORK_POLICIES), cache, watched,
            queue.mark, what="NetworkPolicies",
        )  # fmt: skip
        caches += [own, cluster, namespaces, cidrs, network_policies]
        families.watched = cidrs
        policies = (Grouped(own), Grouped(cluster), Labels(namespaces))
    views = Views(
        services,
        families,
        policies[0],
        cluster_policies=policies[1],
        namespace_labels=policies[2],
        own_namespace=settings.journal_namespace,
        watched=watched,
        slices=slices,
        network_policies=network_policies,
    )
    native = NativeAdmission(ports.admission, settings.admission == Admission.POLICY, watched)
    reconciler = Reconciler(
        rec,
        views,
        ports.writes,
        metrics,
        clock,
        admission=settings.admission,
        native=native,
        recreator=Recreator(
            ports.recreation,
            settings.journal_namespace,
            clock,
            unavailable=settings.recreate_unavailable,
        ),
    )
    gate = PeeringGate(
        settings.peering,
        watched,
        ports.peering,
        lambda: components.mark_policies() if components else None,
        clock,
    )
    components = Components(settings, queue, views, reconciler, gate, caches)
    return components


async def _all_synced(caches: list[Reflector[Any]], ready: asyncio.Event) -> None:
    """Sets ``ready`` once every cache has listed once: the policies are known."""
    for cache in caches:
        await cache.synced.wait()
    ready.set()
