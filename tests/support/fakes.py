"""An in-memory API server for the engine tests: it records every write, and can be
told to reject a patch, fail one, hold back watch events, drop watches or forget
its history (410). It is no stand-in for the real server's rules (those are tested
against the real one); it only lets the engine's own logic be driven precisely."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from dualstack_operator.api.models import IPFamily
from dualstack_operator.core.errors import ApiError, Conflict, Expired, NotFound, Rejected
from dualstack_operator.core.views import (
    Page,
    PeerRecord,
    PolicyView,
    ServicePage,
    ServiceView,
    SliceView,
    WatchEvent,
)
from dualstack_operator.engine.cache import ServiceCache, Views
from dualstack_operator.engine.queue import Result, WorkQueue
from dualstack_operator.engine.reconciler import Reconciler
from dualstack_operator.engine.settings import CacheSettings, ReconcileSettings
from dualstack_operator.observability.metrics import Metrics
from dualstack_operator.runtime.components import Ports, build_components
from dualstack_operator.runtime.settings import Settings

Key = tuple[str, str]


@dataclass(order=True)
class FakeTimer:
    due: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """The engine's clock (engine.clock.Clock) by hand: ``advance`` moves time and runs
    the timers that fell due, in due order, as the loop would have."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._timers: list[FakeTimer] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def pending(self) -> list[float]:
        """When the timers not yet run are due."""
        return sorted(t.due for t in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while self._timers and self._timers[0].due <= self.now:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback()


@dataclass
class Write:
    kind: str  # "patch" or "status"
    namespace: str
    name: str
    body: dict[str, Any]


@dataclass
class FakeApi:
    families: list[IPFamily] = field(default_factory=lambda: [IPFamily.IPV4, IPFamily.IPV6])
    version: int = 100
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    history: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    delivered: int = 0  # history entries watchers may see (hold back the rest)
    hold: bool = False
    compacted: int = 0  # watches from before this version get 410
    breaks: int = 0  # bumped to break every open watch
    writes: list[Write] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, name)
    reject: dict[Key, str] = field(default_factory=dict)
    fail: dict[Key, list[ApiError]] = field(default_factory=dict)  # next patch errors, in order
    peers: list[PeerRecord] = field(default_factory=list)
    peer_reads: int = 0
    lists: int = 0
    watch_starts: list[str] = field(default_factory=list)
    policies: dict[str, list[PolicyView]] = field(default_factory=dict)
    slices: dict[str, list[SliceView]] = field(default_factory=dict)  # EndpointSlices by ns
    slice_history: list[tuple[int, str, SliceView]] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    # --- the world changing ---------------------------------------------------------------

    def service(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        """Creates (or replaces) a Service as the server would store it."""
        labels = spec.pop("labels", {})
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("ipFamilies", [str(self.families[0])])
        body = {"metadata": {"namespace": namespace, "name": name, "labels": labels}, "spec": spec}
        event = "MODIFIED" if (namespace, name) in self.objects else "ADDED"
        self._store(event, body)
        return body

    def delete(self, namespace: str, name: str) -> None:
        body = self.objects.pop((namespace, name))
        self._emit("DELETED", body)

    def policy(self, namespace: str, name: str = "default", **spec: Any) -> None:
        created = f"2026-01-01T00:00:{len(self.policies.get(namespace, [])):02}Z"
        view = PolicyView.from_body(
            {
                "metadata": {
                    "namespace": namespace,
                    "name": name,
                    "uid": f"uid-{namespace}-{name}",
                    "generation": 1,
                    "creationTimestamp": created,
                },
                "spec": spec,
            }
        )
        self.policies.setdefault(namespace, []).append(view)

    def bookmark(self) -> None:
        self.version += 1
        self.history.append((self.version, "BOOKMARK", {"metadata": {}}))
        self._release()

    def _store(self, event: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        self.version += 1
        meta["resourceVersion"] = str(self.version)
        self.objects[(meta["namespace"], meta["name"])] = body
        self.history.append((self.version, event, body))
        self._release()

    def _emit(self, event: str, body: dict[str, Any]) -> None:
        self.version += 1
        copy = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        self.history.append((self.version, event, copy))
        self._release()

    def _release(self) -> None:
        if not self.hold:
            self.delivered = len(self.history)
        self._notify()

    def release(self) -> None:
        """Lets watchers see everything held back."""
        self.hold = False
        self._release()

    def drop_watches(self) -> None:
        """Every open watch breaks (a connection reset)."""
        self.breaks += 1
        self._notify()

    def compact(self) -> None:
        """Forgets the history up to now: resuming from an older version gets 410."""
        self.compacted = self.version

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    # --- ServiceSource ----------------------------------------------------------------------

    async def list_services(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> ServicePage:
        self.lists += 1
        keys = sorted(k for k in self.objects if namespace in (None, k[0]))
        start = int(continue_token or 0)
        page = keys[start : start + limit]
        more = start + limit < len(keys)
        return ServicePage(
            [ServiceView.from_body(self.objects[k]) for k in page],
            str(self.version),
            str(start + limit) if more else None,
        )

    async def watch_services(
        self, namespace: str | None, resource_version: str, timeout_seconds: int, silence: int
    ) -> AsyncIterator[WatchEvent[ServiceView]]:
        self.watch_starts.append(resource_version)
        since = int(resource_version)
        if since < self.compacted:
            raise Expired(410, f"too old resource version: {since} ({self.compacted})")
        generation = self.breaks
        pos = next((i for i, (v, _, _) in enumerate(self.history) if v > since), len(self.history))
        while True:
            while pos < self.delivered:
                version, kind, body = self.history[pos]
                pos += 1
                if namespace not in (None, body["metadata"].get("namespace")):
                    continue
                view = None if kind == "BOOKMARK" else ServiceView.from_body(body)
                yield WatchEvent(kind, str(version), view)
            if self.breaks != generation:
                raise ApiError(0, "ClientPayloadError: connection reset")
            async with self._changed:
                await self._changed.wait()

    # --- Writer -----------------------------------------------------------------------------

    async def patch_service(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str
    ) -> None:
        key = (namespace, name)
        self.writes.append(Write("patch", namespace, name, patch))
        if self.fail.get(key):
            raise self.fail[key].pop(0)
        if key in self.reject:
            raise Rejected(422, self.reject[key])
        body = self.objects.get(key)
        if body is None:
            raise NotFound(404, f'services "{name}" not found')
        if body["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(409, "the object has been modified")
        spec = {**body["spec"], **patch["spec"]}
        if spec["ipFamilyPolicy"] == "SingleStack":
            spec["ipFamilies"] = spec["ipFamilies"][:1]
        self._store("MODIFIED", {"metadata": dict(body["metadata"]), "spec": spec})

    async def patch_policy_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.writes.append(Write("status", namespace, name, status))
        views = self.policies.get(namespace, [])
        for i, view in enumerate(views):
            if view.name == name:  # what kopf's index would show after the write's event
                views[i] = dataclasses.replace(view, status=status)
                return
        raise NotFound(404, f'dualstackpolicies "{name}" not found')

    async def patch_cluster_policy_status(self, name: str, status: dict[str, Any]) -> None:
        self.writes.append(Write("status", "", name, status))

    async def post_event(
        self, involved: dict[str, str], type: str, reason: str, message: str
    ) -> None:
        self.events.append((type, reason, involved["name"]))

    # --- PeerReader and FamilySource --------------------------------------------------------

    async def read_peers(self, name: str, namespaces: tuple[str, ...]) -> list[PeerRecord]:
        self.peer_reads += 1
        return list(self.peers)

    async def service_cidr_families(self) -> list[IPFamily] | None:
        return list(self.families)

    async def probe_families(self) -> list[IPFamily]:
        return list(self.families)

    # --- what was written -------------------------------------------------------------------

    def set_slices(self, namespace: str, views: list[SliceView]) -> None:
        """The namespace's EndpointSlices are now these (as their watch reports them)."""
        for old in self.slices.get(namespace, []):
            self.version += 1
            self.slice_history.append((self.version, "DELETED", old))
        named = [
            dataclasses.replace(v, namespace=namespace, name=v.name or f"{v.service}-{i}")
            for i, v in enumerate(views)
        ]
        for view in named:
            self.version += 1
            self.slice_history.append((self.version, "ADDED", view))
        self.slices[namespace] = named
        self._notify()

    async def list_endpoint_slices(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[SliceView]:
        items = [
            dataclasses.replace(v, namespace=ns, name=v.name or f"{v.service}-{i}")
            for ns, views in sorted(self.slices.items())
            if namespace in (None, ns)
            for i, v in enumerate(views)
        ]
        return Page(items, str(self.version), None)

    async def watch_endpoint_slices(
        self, namespace: str | None, resource_version: str, timeout_seconds: int, silence: int
    ) -> AsyncIterator[WatchEvent[SliceView]]:
        since = int(resource_version)
        pos = 0
        while True:
            while pos < len(self.slice_history):
                version, kind, view = self.slice_history[pos]
                pos += 1
                if version > since and namespace in (None, view.namespace):
                    yield WatchEvent(kind, str(version), view)
            async with self._changed:
                await self._changed.wait()

    # --- admission objects and the recreation journal: none (never enabled here) -----------

    async def list_admission_objects(self, kind: str, selector: str) -> list[dict[str, Any]]:
        return []

    async def list_admission_parameters(
        self, namespaces: tuple[str, ...], selector: str
    ) -> list[dict[str, Any]]:
        return []

    async def list_configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return []

    def _unused(self, *_: Any) -> Any:
        raise AssertionError("the engine tests run without admission objects and recreation")

    create_admission_object = replace_admission_object = delete_admission_object = _unused
    create_admission_parameter = replace_admission_parameter = _unused
    delete_admission_parameter = dry_run_service = _unused
    read_service = delete_service = create_service = service_cidrs = _unused
    create_configmap = label_configmap = delete_configmap = _unused

    def patches(self, name: str | None = None) -> list[Write]:
        return [w for w in self.writes if w.kind == "patch" and name in (None, w.name)]

    def statuses(self, namespace: str | None = None) -> list[Write]:
        return [w for w in self.writes if w.kind == "status" and namespace in (None, w.namespace)]


def peer(identity: str, priority: int, seen: datetime.datetime, lifetime: float = 60) -> PeerRecord:
    return PeerRecord(identity, priority, lifetime, seen)


@dataclass
class Engine:
    """The operator's components around a ``FakeApi``, without kopf."""

    api: FakeApi
    clock: FakeClock
    queue: WorkQueue
    cache: ServiceCache
    views: Views
    reconciler: Reconciler
    metrics: Metrics
    tasks: list[asyncio.Task[None]]

    async def reconcile(self, namespace: str) -> Result:
        """One pass, its ``Result`` handed to the queue (as the worker does)."""
        result = await self.reconciler.reconcile(namespace)
        self.queue.settle(namespace, result)
        return result

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.queue.close()


async def start_engine(
    api: FakeApi,
    reconcile: ReconcileSettings | None = None,
    cache: CacheSettings | None = None,
    namespaces: tuple[str, ...] = (),
) -> Engine:
    """Builds the components as the operator does, with the fake for every port and its
    policies for the reflectors; starts the caches and returns once they are synced."""
    clock = FakeClock()
    settings = Settings(
        namespaces=namespaces,
        reconcile=reconcile or ReconcileSettings(coalesce_seconds=0),
        cache=cache or CacheSettings(retry_seconds=(0.01,)),
    )
    metrics = Metrics()
    ports = Ports(api, api, api, api, api)
    built = build_components(settings, ports, metrics, clock, policies=(api.policies, {}, {}))
    built.views.cluster.families = list(api.families)
    built.views.policies_ready.set()
    tasks = [asyncio.create_task(c.run()) for c in built.caches]
    await until("the caches to sync", lambda: all(c.synced.is_set() for c in built.caches))
    services = built.views.services
    return Engine(api, clock, built.queue, services, built.views, built.reconciler, metrics, tasks)


async def until(what: str, probe: Callable[[], object], within: float = 5.0) -> None:
    """Awaits a condition with a deadline (the loop runs the cache meanwhile)."""
    deadline = asyncio.get_running_loop().time() + within
    while not probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.001)
