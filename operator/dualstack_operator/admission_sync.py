"""Keeps the native admission objects in step with the policies, one namespace at a time.

The objects are the operator's own (a label says so; nothing else is touched).
What is on the server is known from a labelled list at start and at every full
resync, and from the answers to our own writes in between: a namespace whose
objects already carry the hash of what its policies compile to costs no request.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dualstack_operator.errors import ApiError, Conflict, NotFound
from dualstack_operator.models import IPFamily
from dualstack_operator.native_admission import (
    NAMESPACE_LABEL,
    OWNER,
    OWNER_LABEL,
    Kind,
    desired_objects,
    spec_hash,
)
from dualstack_operator.plan import PolicyView

log = logging.getLogger("dualstack_operator.admission")


class AdmissionStore(Protocol):
    """The calls this needs (``KubeAPI``; a recording fake in unit tests)."""

    async def list_admission_objects(self, kind: Kind, selector: str) -> list[dict[str, Any]]: ...

    async def create_admission_object(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]: ...

    async def replace_admission_object(
        self, kind: Kind, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def delete_admission_object(self, kind: Kind, name: str) -> None: ...


@dataclass(frozen=True)
class Seen:
    """What we know of one object on the server."""

    namespace: str
    hash: str
    resource_version: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Seen:
        meta = obj.get("metadata") or {}
        return cls(
            namespace=str((meta.get("labels") or {}).get(NAMESPACE_LABEL, "")),
            hash=spec_hash(obj),
            resource_version=str(meta.get("resourceVersion", "")),
        )


class NativeAdmission:
    """The namespaces' admission objects: compiled from policies when enabled, else removed.

    Disabled (admission off, or the webhook chosen), it only removes what an
    earlier run with native admission left behind.
    """

    def __init__(self, store: AdmissionStore, enabled: bool, namespaces: Sequence[str]) -> None:
        self.store = store
        self.enabled = enabled
        selector = f"{OWNER_LABEL}={OWNER}"
        if namespaces:  # a namespaced operator touches only its namespaces' objects
            selector += f",{NAMESPACE_LABEL} in ({','.join(sorted(namespaces))})"
        self.selector = selector
        self.existing: dict[tuple[Kind, str], Seen] = {}

    def namespaces(self) -> set[str]:
        """Namespaces that have objects of ours (a pass must look at them, policy or not)."""
        return {seen.namespace for seen in self.existing.values()}

    async def refresh(self) -> None:
        """Re-reads what is on the server (at start, at each full resync, after a conflict)."""
        existing: dict[tuple[Kind, str], Seen] = {}
        for kind in Kind:
            try:
                items = await self.store.list_admission_objects(kind, self.selector)
            except NotFound:
                continue  # not served by this API server (before v1.36): nothing of ours
            except ApiError as err:
                if self.enabled:
                    raise
                # Only cleaning up, maybe without the rights to (an older ClusterRole).
                log.debug("cannot list %s to clean up: %s", kind, err)
                continue
            for obj in items:
                existing[(kind, str(obj["metadata"]["name"]))] = Seen.of(obj)
        self.existing = existing

    async def sync(
        self, namespace: str, policies: Iterable[PolicyView], cluster: Sequence[IPFamily]
    ) -> int:
        """Creates, updates and deletes this namespace's objects; returns the writes made."""
        try:
            return await self._sync(namespace, policies, cluster)
        except Conflict:
            # Someone else wrote (another replica, a hand edit): look again, try once more.
            await self.refresh()
            return await self._sync(namespace, policies, cluster)

    async def _sync(
        self, namespace: str, policies: Iterable[PolicyView], cluster: Sequence[IPFamily]
    ) -> int:
        desired = desired_objects(namespace, policies, cluster) if self.enabled else []
        wanted = {(Kind(obj["kind"]), str(obj["metadata"]["name"])): obj for obj in desired}
        writes = 0
        for (kind, name), obj in wanted.items():  # policies before their bindings
            seen = self.existing.get((kind, name))
            if seen is not None and seen.hash == spec_hash(obj):
                continue
            if seen is None:
                made = await self.store.create_admission_object(kind, obj)
                log.info("created %s %s", kind, name)
            else:
                meta = {**obj["metadata"], "resourceVersion": seen.resource_version}
                made = await self.store.replace_admission_object(kind, {**obj, "metadata": meta})
                log.info("updated %s %s", kind, name)
            self.existing[(kind, name)] = Seen.of(made)
            writes += 1
        stale = [
            key
            for key, seen in self.existing.items()
            if seen.namespace == namespace and key not in wanted
        ]
        for kind, name in sorted(stale, key=lambda k: list(Kind).index(k[0]), reverse=True):
            with contextlib.suppress(NotFound):  # already gone
                await self.store.delete_admission_object(kind, name)
            log.info("deleted %s %s", kind, name)
            del self.existing[(kind, name)]
            writes += 1
        return writes

    async def sync_guarded(
        self, namespace: str, policies: Iterable[PolicyView], cluster: Sequence[IPFamily]
    ) -> bool:
        """``sync``, with failures logged rather than raised: False if it did not finish."""
        try:
            await self.sync(namespace, policies, cluster)
        except ApiError as err:
            log.warning("cannot keep the admission objects of namespace %s: %s", namespace, err)
            return False
        return True
