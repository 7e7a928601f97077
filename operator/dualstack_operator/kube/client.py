"""Generic verbs over resource descriptors (as lightkube does): get, list, watch, create,
replace, apply, merge-patch, delete, discovery. One method a verb, not one a call."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from dualstack_operator.api.names import FIELD_MANAGER
from dualstack_operator.core.errors import NotFound, classify
from dualstack_operator.core.views import Page, V, WatchEvent
from dualstack_operator.kube.resources import Collection, Resource
from dualstack_operator.kube.transport import APPLY_PATCH, MERGE_PATCH, Transport, query_of


def watch_event(kind: Collection[V], event: Mapping[str, Any]) -> WatchEvent[V]:
    """One line of a watch stream as an event of views; an ERROR line (a 410 Gone, say)
    is raised as the typed error it names."""
    obj = event.get("object") or {}
    type_ = str(event.get("type", ""))
    if type_ == "ERROR":
        raise classify(int(obj.get("code") or 0), str(obj.get("message", obj)))
    version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
    if type_ == "BOOKMARK":
        return WatchEvent(type_, version, None)
    return WatchEvent(type_, version, kind.view(obj))


class Client:
    """The verbs every part of the operator uses, over one ``Transport``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def get(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The object, or None where there is none."""
        try:
            return await self.transport.request("GET", resource.path(namespace, name))
        except NotFound:
            return None

    async def list(
        self, resource: Resource, namespace: str | None = None, selector: str = "", **query: Any
    ) -> list[dict[str, Any]]:
        """Every item (in one namespace, or all): the lists this makes are small ones."""
        params = query_of({"labelSelector": selector, **query})
        doc = await self.transport.request("GET", resource.path(namespace), params)
        return list(doc.get("items") or [])

    async def create(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        params = query_of({"fieldManager": FIELD_MANAGER, "dryRun": "All" if dry_run else None})
        return await self.transport.request("POST", resource.path(namespace), params, body)

    async def replace(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        """A full update; ``metadata.resourceVersion`` makes it fail on a stale view."""
        meta = body["metadata"]
        path = resource.path(meta.get("namespace"), meta["name"])
        params = query_of({"fieldManager": FIELD_MANAGER})
        return await self.transport.request("PUT", path, params, body)

    async def apply(
        self, resource: Resource, body: Mapping[str, Any], subresource: str = ""
    ) -> dict[str, Any]:
        """A server-side apply as the operator's field manager, forced: what it sends is
        its own (who else holds a field was judged before deciding to send it)."""
        meta = body["metadata"]
        path = resource.path(meta.get("namespace"), meta["name"], subresource)
        params = query_of({"fieldManager": FIELD_MANAGER, "force": "true"})
        return await self.transport.request("PATCH", path, params, body, APPLY_PATCH)

    async def merge_patch(
        self, resource: Resource, name: str, patch: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        path = resource.path(namespace, name)
        params = query_of({"fieldManager": FIELD_MANAGER})
        return await self.transport.request("PATCH", path, params, patch, MERGE_PATCH)

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        preconditions: Mapping[str, str] | None = None,
    ) -> None:
        """Deletes the object; with ``preconditions`` (uid, resourceVersion) only that one."""
        body = {"preconditions": dict(preconditions)} if preconditions else None
        await self.transport.request("DELETE", resource.path(namespace, name), (), body)

    async def served(self, group_version: str) -> set[str]:
        """The resources a group/version serves (discovery): empty where it serves none."""
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        try:
            doc = await self.transport.request("GET", path)
        except NotFound:
            return set()
        return {str(r.get("name")) for r in doc.get("resources") or []}

    async def list_page(
        self, kind: Collection[V], namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[V]:
        """One page of a collection, reduced to views at once (the raw page is dropped)."""
        params = query_of({"limit": limit, "continue": continue_token})
        doc = await self.transport.request("GET", kind.path(namespace), params)
        meta = doc.get("metadata") or {}
        return Page(
            items=[kind.view(item) for item in doc.get("items") or []],
            resource_version=str(meta.get("resourceVersion", "")),
            continue_token=meta.get("continue") or None,
        )

    async def watch(
        self,
        kind: Collection[V],
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int,
        silence: int,
    ) -> AsyncIterator[WatchEvent[V]]:
        """A collection's events after ``resource_version`` until the server ends the watch."""
        params = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_seconds),
        ]
        async for event in self.transport.lines(kind.path(namespace), params, silence):
            yield watch_event(kind, event)

    def lister(self, kind: Collection[V]) -> Callable[..., Awaitable[Page[V]]]:
        """``list_page`` of one collection, as a reflector calls it."""
        return functools.partial(self.list_page, kind)

    def watcher(self, kind: Collection[V]) -> Callable[..., AsyncIterator[WatchEvent[V]]]:
        """``watch`` of one collection, as a reflector calls it."""
        return functools.partial(self.watch, kind)
