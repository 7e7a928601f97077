"""What the operator sees: Services (its own list+watch), policies (kopf's index), cluster.

Services are cached by a reflector, client-go's pattern on kubernetes-asyncio, not
by kopf's per-object machinery (a worker, queue and memory per object: unusable at
tens of thousands of Services). The cache holds only ``ServiceView``s, grouped by
namespace, and marks a namespace dirty whenever one of its Services changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol

from dualstack_operator.api.models import IPFamily
from dualstack_operator.api.names import DNS_NAMESPACE, DNS_SERVICE
from dualstack_operator.core.errors import ApiError, Expired, Forbidden, NotFound
from dualstack_operator.core.scope import effective_policies, governs
from dualstack_operator.core.views import (
    CidrView,
    NamespaceView,
    NetworkPolicyView,
    Page,
    PolicyView,
    ServiceView,
    SliceView,
    V,
    WatchEvent,
)
from dualstack_operator.engine.backoff import Backoff
from dualstack_operator.engine.settings import CacheSettings

log = logging.getLogger("dualstack_operator.engine.cache")
NOT_SERVED_RECHECK_SECONDS = 10.0  # how often an optional kind not served is looked for


Lister = Callable[[str | None, int, str | None], Awaitable[Page[V]]]
Watcher = Callable[[str | None, str, int, int], AsyncIterator[WatchEvent[V]]]


class ServiceSource(Protocol):
    """The API calls the Service cache makes (``KubeAPI``; a fake in the engine tests)."""

    async def list_services(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[ServiceView]: ...

    def watch_services(
        self, namespace: str | None, resource_version: str, timeout_seconds: int, silence: int
    ) -> AsyncIterator[WatchEvent[ServiceView]]:
        """Events after ``resource_version``; raises ``Expired`` when that is too old."""
        ...


class Reflector(Generic[V]):
    """Views of one kind by namespace, kept by one list+watch per watched scope.

    Paginated list, then a watch from the list's resourceVersion with bookmarks;
    a watch that ends or breaks resumes from the last resourceVersion seen, and a
    410 Gone (history compacted) makes a full relist, diffed against the cache so
    that every change missed meanwhile marks its namespace. Each namespace has a
    generation that moves with every change in it: what a pass read can be told
    from what it would read now without looking at the items.
    """

    what = "objects"

    def __init__(
        self,
        lister: Lister[V],
        watcher: Watcher[V],
        settings: CacheSettings,
        namespaces: tuple[str, ...],
        on_change: Callable[[str], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        what: str | None = None,
        optional: bool = False,
    ) -> None:
        self.what = what or self.what
        # Optional: a kind that may not be served (its CRD not applied yet) is kept empty,
        # said once, and looked for again every little while.
        self.optional = optional
        self.lister = lister
        self.watcher = watcher
        self.settings = settings
        self.scopes: tuple[str | None, ...] = namespaces or (None,)
        self.on_change = on_change
        self.sleep = sleep
        self._items: dict[str, dict[str, V]] = {}
        self._generations: dict[str, int] = {}
        self._versions: dict[str | None, str] = {}  # per scope: where the watch resumes
        self._unsynced = set(self.scopes)
        self.synced = asyncio.Event()  # every scope listed once: passes may start
        self.relists = 0  # completed lists after the first one (after a 410)
        self.resumes = 0  # watches resumed from the last resourceVersion
        self.forbidden = False  # the identity may not list these: nothing is kept
        self.not_served = False  # an optional kind the API server does not serve (yet)

    def in_namespace(self, namespace: str) -> Mapping[str, V]:
        return self._items.get(namespace, {})

    def generation(self, namespace: str) -> int:
        """Moves whenever something in ``namespace`` changes (never goes back)."""
        return self._generations.get(namespace, 0)

    def __len__(self) -> int:
        return sum(len(s) for s in self._items.values())

    def resume_version(self, scope: str | None) -> str | None:
        """Where the watch of ``scope`` resumes (None: it lists afresh)."""
        return self._versions.get(scope)

    def _changed(self, namespace: str) -> None:
        self._generations[namespace] = self._generations.get(namespace, 0) + 1
        self.on_change(namespace)

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
                log.info("%s in %s: %s; listing afresh", self.what, where, err)
                self._versions.pop(scope, None)
            except NotFound as err:
                if not self.optional:
                    failures += 1
                    log.warning("%s in %s: %s", self.what, where, err)
                    await self._back_off(failures)
                    continue
                self._not_served(scope, err)
                await self.sleep(NOT_SERVED_RECHECK_SECONDS)
                continue
            except Forbidden as err:
                self._forbid(scope, err)
                return
            except ApiError as err:  # a restarting or unreachable API server (kube maps all)
                failures += 1
                log.warning("%s in %s: %s", self.what, where, str(err) or type(err).__name__)
                await self._back_off(failures)
                continue
            # A watch (or a relist) the server ends at once, again and again, must not spin.
            quick = not events and time.monotonic() - began < 1.0
            failures = failures + 1 if quick else 0
            await self._back_off(failures)

    def _not_served(self, scope: str | None, err: ApiError) -> None:
        if not self.not_served:
            log.warning("%s are not served (%s): ignored until they are", self.what, err)
        self.not_served = True
        if scope in self._unsynced:
            self._unsynced.discard(scope)
            if not self._unsynced:
                self.synced.set()

    def _forbid(self, scope: str | None, err: ApiError) -> None:
        """Without the right to list these, say so once and keep nothing (not a crash)."""
        if not self.forbidden:
            log.warning("cannot list or watch %s: %s", self.what, err)
        self.forbidden = True
        self._unsynced.discard(scope)
        if not self._unsynced:
            self.synced.set()

    async def _back_off(self, failures: int) -> None:
        if failures:
            await self.sleep(Backoff(self.settings.retry_seconds).delay(failures))

    async def _relist(self, scope: str | None) -> None:
        """Lists every page, then swaps the result in and marks what differs."""
        if self.not_served:
            log.info("%s are served now", self.what)
            self.not_served = False
        began = time.monotonic()
        fresh: dict[str, dict[str, V]] = {}
        token: str | None = None
        version = ""
        while True:
            page = await self.lister(scope, self.settings.page_size, token)
            version = version or page.resource_version
            for item in page.items:
                fresh.setdefault(item.namespace, {})[item.name] = item
            token = page.continue_token
            if not token:
                break
        old = (
            self._items
            if scope is None
            else {scope: self._items[scope]}
            if scope in self._items
            else {}
        )
        changed = [ns for ns in old.keys() | fresh.keys() if old.get(ns) != fresh.get(ns)]
        if scope is None:
            self._items = fresh
        else:
            self._items.pop(scope, None)
            self._items.update(fresh)
        first = scope in self._unsynced
        self._unsynced.discard(scope)
        self.relists += 0 if first else 1
        if first and not self._unsynced:
            log.info(
                "%s cache ready: %d %s in %d namespaces listed in %.1fs",
                self.what[:-1].capitalize() if self.what.endswith("s") else self.what,
                len(self),
                self.what,
                len(self._items),
                time.monotonic() - began,
            )
            self.synced.set()
        self._versions[scope] = version
        for namespace in changed:
            self._changed(namespace)

    async def _watch(self, scope: str | None) -> int:
        """Applies events until the server ends the watch; returns how many came."""
        count = 0
        timeout = self.settings.watch_timeout_seconds
        silence = self.settings.watch_silence_seconds
        version = self._versions[scope]
        async for event in self.watcher(scope, version, timeout, silence):
            count += 1
            if event.resource_version:
                self._versions[scope] = event.resource_version  # resume from here
            item = event.item
            if item is None:
                continue  # a bookmark: only the version moves
            items = self._items.setdefault(item.namespace, {})
            if event.type == "DELETED":
                items.pop(item.name, None)
                if not items:
                    del self._items[item.namespace]
            else:
                items[item.name] = item
            self._changed(item.namespace)
        return count


class ServiceCache(Reflector[ServiceView]):
    """Services by namespace, as ``ServiceView``s (client-go's reflector pattern)."""

    what = "Services"

    def __init__(
        self,
        source: ServiceSource,
        settings: CacheSettings,
        namespaces: tuple[str, ...],
        on_change: Callable[[str], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            source.list_services, source.watch_services, settings, namespaces, on_change, sleep
        )
        self.source = source


class SliceSource(Protocol):
    async def list_endpoint_slices(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[SliceView]: ...

    def watch_endpoint_slices(
        self, namespace: str | None, resource_version: str, timeout_seconds: int, silence: int
    ) -> AsyncIterator[WatchEvent[SliceView]]: ...


class SliceCache(Reflector[SliceView]):
    """EndpointSlices by namespace, reduced to ready endpoints per family (MissingEndpoints):
    watched like Services, so a pass never lists them and a slice that changes (pods
    becoming ready) brings a pass of its own."""

    what = "EndpointSlices"

    def __init__(
        self,
        source: SliceSource,
        settings: CacheSettings,
        namespaces: tuple[str, ...],
        on_change: Callable[[str], None],
    ) -> None:
        super().__init__(
            source.list_endpoint_slices,
            source.watch_endpoint_slices,
            settings,
            namespaces,
            on_change,
        )


class FamilySource(Protocol):
    async def service_cidr_families(self) -> list[IPFamily] | None: ...
    async def probe_families(self) -> list[IPFamily]: ...


# A conversion patches the default ServiceCIDR first and restarts the API server with
# matching flags after; until then the server refuses the new family. Meanwhile the
# families are checked every QUICK seconds, for PATIENCE seconds at most.
QUICK_RECHECK_SECONDS = 1.0
CONVERSION_PATIENCE_SECONDS = 300.0


@dataclass
class ClusterFamilies:
    """The families the cluster's service network offers, primary first.

    Where ServiceCIDRs are served, their watch (``watched``) says at once that the
    default range changed, and the families move as soon as the API server serves
    what it declares (a dry-run probe). The poll is for clusters without that API, or
    without the right to watch it."""

    families: list[IPFamily] = field(default_factory=list)
    watched: Reflector[CidrView] | None = None
    _nudged: asyncio.Event = field(
        default_factory=asyncio.Event, init=False, repr=False, compare=False
    )

    def set(self, families: list[IPFamily]) -> bool:
        """True if ``families`` differ from what was known."""
        if not families or families == self.families:
            return False
        log.info("cluster service network offers %s", [str(f) for f in families])
        self.families = families
        return True

    def declared(self) -> list[IPFamily] | None:
        """The default ServiceCIDR's families, as the watch has it."""
        default = self.watched.in_namespace("").get("kubernetes") if self.watched else None
        return default.families if default is not None else None

    @property
    def watching(self) -> bool:
        """Whether the ServiceCIDR watch serves (else the families are polled)."""
        w = self.watched
        return w is not None and w.synced.is_set() and not (w.not_served or w.forbidden)

    def nudge(self) -> None:
        """A ServiceCIDR changed: ``keep_checking`` looks again now."""
        self._nudged.set()

    async def refresh(self, source: FamilySource) -> bool:
        """ServiceCIDR API first, a dry-run probe where it is missing; True if changed.
        A range that declares what the API server does not serve yet (a conversion under
        way) is not taken: what is known stays, or at start what the probe says."""
        declared = await source.service_cidr_families()
        if not declared:
            return self.set(await source.probe_families())
        if declared == self.families or await self._served(source, declared):
            return self.set(declared)
        if not self.families:
            return self.set(await source.probe_families())
        return False

    async def _served(self, source: FamilySource, declared: list[IPFamily]) -> bool:
        try:
            return await source.probe_families() == declared
        except Forbidden:
            return True  # no way to ask: the ServiceCIDR is all there is

    async def keep_checking(
        self, source: FamilySource, interval: float, on_change: Callable[[], None]
    ) -> None:
        """Re-detects the families (a cluster gaining one, say) whenever the ServiceCIDR
        watch says the default range changed, or every ``interval`` seconds without it."""
        pending: float | None = None  # since when the range declares what is not served
        failing = False  # said once per outage, not every QUICK seconds
        while True:
            timeout = QUICK_RECHECK_SECONDS if pending is not None else interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), timeout)
            self._nudged.clear()
            changed = False
            try:
                declared = self.declared() if self.watching else None
                if declared is None:  # no watch (or no default range in it): ask
                    pending = None
                    changed = await self.refresh(source)
                elif declared == self.families:
                    pending = None
                else:
                    pending = pending or time.monotonic()
                    waited = time.monotonic() - pending
                    if waited >= CONVERSION_PATIENCE_SECONDS:
                        log.warning(
                            "the default ServiceCIDR has offered %s for %.0f s but the API "
                            "server does not serve them; going by the ServiceCIDR",
                            [str(f) for f in declared], waited,
                        )  # fmt: skip
                    if waited >= CONVERSION_PATIENCE_SECONDS or await self._served(
                        source, declared
                    ):
                        pending = None
                        changed = self.set(declared)
                    # else: the API server's flags do not match the range yet
            except ApiError as err:  # a restarting API server: keep the last answer
                if not failing:
                    log.warning("cannot re-check the cluster's families: %s", err)
                failing = True
                continue
            failing = False
            if changed:
                on_change()


class Grouped(Mapping[str, list[V]]):
    """A reflector's views as lists by namespace (what a pass reads of policies)."""

    def __init__(self, reflector: Reflector[V]) -> None:
        self.reflector = reflector

    def __getitem__(self, namespace: str) -> list[V]:
        items = self.reflector.in_namespace(namespace)
        if not items:
            raise KeyError(namespace)
        return list(items.values())

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.reflector._items))

    def __len__(self) -> int:
        return len(self.reflector._items)


class Labels(Mapping[str, list[Mapping[str, str]]]):
    """Namespaces' labels by name, from the namespace reflector."""

    def __init__(self, reflector: Reflector[NamespaceView]) -> None:
        self.reflector = reflector

    def __getitem__(self, name: str) -> list[Mapping[str, str]]:
        view = self.reflector.in_namespace(name).get(name)
        if view is None:
            raise KeyError(name)
        return [view.labels]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.reflector._items))

    def __len__(self) -> int:
        return len(self.reflector._items)


@dataclass
class Views:
    """Everything a pass reads: cached Services, policies and namespaces, cluster families."""

    services: ServiceCache
    cluster: ClusterFamilies
    # DualStackPolicies by namespace (a reflector's, or a plain dict in tests).
    policies: Mapping[str, Iterable[PolicyView]] = field(default_factory=dict)
    # Set once the policies are completely known (every policy reflector listed once).
    policies_ready: asyncio.Event = field(default_factory=asyncio.Event)
    # ClusterDualStackPolicies (all under the key ""), namespaces' labels by name, and
    # the namespaces a cluster policy never governs.
    cluster_policies: Mapping[str, Iterable[PolicyView]] = field(default_factory=dict)
    namespace_labels: Mapping[str, Iterable[Mapping[str, str]]] = field(default_factory=dict)
    own_namespace: str | None = None
    watched: tuple[str, ...] = ()  # a namespaced operator's namespaces (empty: all)
    slices: SliceCache | None = None  # EndpointSlices (None: MissingEndpoints not checked)
    # NetworkPolicies (None: NetworkPolicyOneFamily not checked).
    network_policies: Reflector[NetworkPolicyView] | None = None

    def network_policies_in(self, namespace: str) -> Iterable[NetworkPolicyView] | None:
        """The namespace's NetworkPolicies; None where they cannot be read."""
        cache = self.network_policies
        if cache is None or cache.forbidden:
            return None
        return cache.in_namespace(namespace).values()

    def cluster_dns(self) -> ServiceView | bool | None:
        """The kube-dns Service; False when the operator does not watch kube-system (not
        checked), None when there is none."""
        if self.watched and DNS_NAMESPACE not in self.watched:
            return False
        return self.services.in_namespace(DNS_NAMESPACE).get(DNS_SERVICE)

    def cluster_policy_list(self) -> list[PolicyView]:
        return list(self.cluster_policies.get("", ()))

    def labels_of(self, namespace: str) -> Mapping[str, str]:
        return next(iter(self.namespace_labels.get(namespace, ())), {})

    def policies_in(self, namespace: str) -> list[PolicyView]:
        """The policies governing a namespace: its own, else the cluster's that select it."""
        own = list(self.policies[namespace]) if namespace in self.policies else []
        return effective_policies(
            own,
            self.cluster_policy_list(),
            namespace,
            self.labels_of(namespace),
            self.own_namespace,
            self.watched,
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
