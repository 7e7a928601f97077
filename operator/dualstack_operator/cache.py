"""What the operator sees: Services (its own list+watch), policies (kopf's index), cluster.

Services are cached by a reflector, client-go's pattern on kubernetes-asyncio, not
by kopf's per-object machinery (a worker, queue and memory per object: unusable at
tens of thousands of Services). The cache holds only ``ServiceView``s, grouped by
namespace, and marks a namespace dirty whenever one of its Services changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from dualstack_operator.cluster_policy import effective_policies, governs
from dualstack_operator.decision import ServiceView
from dualstack_operator.errors import Expired
from dualstack_operator.models import IPFamily
from dualstack_operator.plan import PolicyView
from dualstack_operator.settings import CacheSettings

log = logging.getLogger("dualstack_operator.cache")


@dataclass(frozen=True)
class ServicePage:
    items: list[ServiceView]
    resource_version: str  # the list's: where the watch starts
    continue_token: str | None


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    resource_version: str
    service: ServiceView | None  # None for a BOOKMARK


class ServiceSource(Protocol):
    """The API calls a reflector makes (``KubeAPI``; a fake in the engine tests)."""

    async def list_services(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> ServicePage: ...

    def watch_services(
        self, namespace: str | None, resource_version: str, timeout_seconds: int, silence: int
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version``; raises ``Expired`` when that is too old."""
        ...


class ServiceCache:
    """Services by namespace, kept by one reflector per watched scope.

    Paginated list, then a watch from the list's resourceVersion with bookmarks;
    a watch that ends or breaks resumes from the last resourceVersion seen, and a
    410 Gone (history compacted) makes a full relist, diffed against the cache so
    that every change missed meanwhile marks its namespace.
    """

    def __init__(
        self,
        source: ServiceSource,
        settings: CacheSettings,
        namespaces: tuple[str, ...],
        on_change: Callable[[str], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.source = source
        self.settings = settings
        self.scopes: tuple[str | None, ...] = namespaces or (None,)
        self.on_change = on_change
        self.sleep = sleep
        self._services: dict[str, dict[str, ServiceView]] = {}
        self._versions: dict[str | None, str] = {}  # per scope: where the watch resumes
        self._unsynced = set(self.scopes)
        self.synced = asyncio.Event()  # every scope listed once: passes may start
        self.relists = 0  # completed lists after the first one (after a 410)
        self.resumes = 0  # watches resumed from the last resourceVersion

    def in_namespace(self, namespace: str) -> Mapping[str, ServiceView]:
        return self._services.get(namespace, {})

    def __len__(self) -> int:
        return sum(len(s) for s in self._services.values())

    def resume_version(self, scope: str | None) -> str | None:
        """Where the watch of ``scope`` resumes (None: it lists afresh)."""
        return self._versions.get(scope)

    async def run(self) -> None:
        await asyncio.gather(*(self._reflect(scope) for scope in self.scopes))

    async def _reflect(self, scope: str | None) -> None:
        where = f"namespace {scope}" if scope else "all namespaces"
        failures = 0
        while True:
            began = time.monotonic()
            events = 0
            try:
                if scope not in self._versions:
                    await self._relist(scope)
                events = await self._watch(scope)
                self.resumes += 1
            except asyncio.CancelledError:
                raise
            except Expired as err:
                log.info("Services in %s: %s; listing afresh", where, err)
                self._versions.pop(scope, None)
            except Exception as err:  # a restarting or unreachable API server
                failures += 1
                log.warning("Services in %s: %s", where, str(err) or type(err).__name__)
                await self._back_off(failures)
                continue
            # A watch (or a relist) the server ends at once, again and again, must not spin.
            quick = not events and time.monotonic() - began < 1.0
            failures = failures + 1 if quick else 0
            await self._back_off(failures)

    async def _back_off(self, failures: int) -> None:
        if failures:
            delays = self.settings.retry_seconds
            await self.sleep(delays[min(failures, len(delays)) - 1])

    async def _relist(self, scope: str | None) -> None:
        """Lists every page, then swaps the result in and marks what differs."""
        began = time.monotonic()
        fresh: dict[str, dict[str, ServiceView]] = {}
        token: str | None = None
        version = ""
        while True:
            page = await self.source.list_services(scope, self.settings.page_size, token)
            version = version or page.resource_version
            for svc in page.items:
                fresh.setdefault(svc.namespace, {})[svc.name] = svc
            token = page.continue_token
            if not token:
                break
        old = (
            self._services
            if scope is None
            else {scope: self._services[scope]}
            if scope in self._services
            else {}
        )
        changed = [ns for ns in old.keys() | fresh.keys() if old.get(ns) != fresh.get(ns)]
        if scope is None:
            self._services = fresh
        else:
            self._services.pop(scope, None)
            self._services.update(fresh)
        first = scope in self._unsynced
        self._unsynced.discard(scope)
        self.relists += 0 if first else 1
        if first and not self._unsynced:
            log.info(
                "Service cache ready: %d Services in %d namespaces listed in %.1fs",
                len(self),
                len(self._services),
                time.monotonic() - began,
            )
            self.synced.set()
        self._versions[scope] = version
        for namespace in changed:
            self.on_change(namespace)

    async def _watch(self, scope: str | None) -> int:
        """Applies events until the server ends the watch; returns how many came."""
        count = 0
        timeout = self.settings.watch_timeout_seconds
        silence = self.settings.watch_silence_seconds
        version = self._versions[scope]
        async for event in self.source.watch_services(scope, version, timeout, silence):
            count += 1
            if event.resource_version:
                self._versions[scope] = event.resource_version  # resume from here
            svc = event.service
            if svc is None:
                continue  # a bookmark: only the version moves
            services = self._services.setdefault(svc.namespace, {})
            if event.type == "DELETED":
                services.pop(svc.name, None)
                if not services:
                    del self._services[svc.namespace]
            else:
                services[svc.name] = svc
            self.on_change(svc.namespace)
        return count


class FamilySource(Protocol):
    async def service_cidr_families(self) -> list[IPFamily] | None: ...
    async def probe_families(self) -> list[IPFamily]: ...


@dataclass
class ClusterFamilies:
    """The families the cluster's service network offers, primary first."""

    families: list[IPFamily] = field(default_factory=list)

    async def refresh(self, source: FamilySource) -> bool:
        """ServiceCIDR API first, a dry-run probe where it is missing; True if changed."""
        families = await source.service_cidr_families()
        if not families:
            families = await source.probe_families()
        if families == self.families:
            return False
        log.info("cluster service network offers %s", [str(f) for f in families])
        self.families = families
        return True

    async def keep_checking(
        self, source: FamilySource, interval: float, on_change: Callable[[], None]
    ) -> None:
        """Re-detects every ``interval`` seconds (a cluster gaining a family, say)."""
        while True:
            await asyncio.sleep(interval)
            try:
                changed = await self.refresh(source)
            except Exception as err:  # a restarting API server: keep the last answer
                log.warning("cannot re-check the cluster's families: %s", err)
                continue
            if changed:
                on_change()


@dataclass
class Views:
    """Everything a pass reads: cached Services, indexed policies, cluster families."""

    services: ServiceCache
    cluster: ClusterFamilies
    # DualStackPolicies by namespace: kopf's index, or a plain dict in tests.
    policies: Mapping[str, Iterable[PolicyView]] = field(default_factory=dict)
    # Set once the policies are completely known (kopf calls handlers only then).
    policies_ready: asyncio.Event = field(default_factory=asyncio.Event)
    # ClusterDualStackPolicies (kopf's index, all under the key ""), namespaces' labels
    # (kopf's index by name), and the namespaces a cluster policy never governs.
    cluster_policies: Mapping[str, Iterable[PolicyView]] = field(default_factory=dict)
    namespace_labels: Mapping[str, Iterable[Mapping[str, str]]] = field(default_factory=dict)
    own_namespace: str | None = None
    watched: tuple[str, ...] = ()  # a namespaced operator's namespaces (empty: all)

    def cluster_policy_list(self) -> list[PolicyView]:
        return list(self.cluster_policies.get("", ()))

    def labels_of(self, namespace: str) -> Mapping[str, str]:
        return next(iter(self.namespace_labels.get(namespace, ())), {})

    def policies_in(self, namespace: str) -> list[PolicyView]:
        """The policies governing a namespace: its own, else the cluster's that select it."""
        own = list(self.policies[namespace]) if namespace in self.policies else []
        if own or (self.watched and namespace not in self.watched):
            return own
        return effective_policies(
            own,
            self.cluster_policy_list(),
            namespace,
            self.labels_of(namespace),
            self.own_namespace,
        )

    def policy_namespaces(self) -> list[str]:
        found = {ns for ns, policies in list(self.policies.items()) if policies}
        cluster = self.cluster_policy_list()
        for ns in list(self.namespace_labels) if cluster else ():
            if ns in found or (self.watched and ns not in self.watched):
                continue
            labels = self.labels_of(ns)
            if any(governs(p, ns, labels, self.own_namespace) for p in cluster):
                found.add(ns)
        return sorted(found)
