"""Opt-in recreation of Services whose primary family is wrong, with nothing lost.

The API server never lets a ClusterIP Service change its primary family, so the
only fix is a new Service of the same name. Before the delete, the Service's
manifest (everything but what the server allocates) is journaled in a ConfigMap
the operator owns; the entry goes only once the new Service exists. An operator
killed in between finds the entry at its next start and finishes the job, once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from dualstack_operator.api.names import (
    JOURNAL_LABEL,
    MANAGED_BY_LABEL,
    NAME,
    OWNED_NAMESPACE_LABEL,
)
from dualstack_operator.core.errors import ApiError, Conflict, NotFound
from dualstack_operator.core.recreation import Entry, Outcome, journal_name, recreated_manifest

log = logging.getLogger("dualstack_operator.engine.recreation")

FAULT_ENV = "DUALSTACK_FAULT_POINTS"


def fault_point(name: str) -> None:
    """A test hook: die right here (SIGKILL, no cleanup) if the environment asks for it."""
    if name in os.environ.get(FAULT_ENV, "").split(","):
        log.warning("fault point %s: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)


class RecreateStore(Protocol):
    """The calls recreation makes (``KubeAPI``)."""

    async def read_service(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def delete_service(
        self, namespace: str, name: str, uid: str, resource_version: str
    ) -> None: ...

    async def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def list_configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    async def create_configmap(self, namespace: str, body: dict[str, Any]) -> None: ...

    async def label_configmap(self, namespace: str, name: str, labels: dict[str, str]) -> None: ...

    async def delete_configmap(self, namespace: str, name: str) -> None: ...


class Recreator:
    """Recreations with their journal, their per-policy budget, one at a time per namespace."""

    def __init__(
        self,
        store: RecreateStore,
        journal_namespace: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.journal_namespace = journal_namespace
        self.clock = clock
        self.recent: dict[tuple[str, str], deque[float]] = {}  # (ns, policy) -> times

    # --- the budget ---------------------------------------------------------------------

    def budget_left(self, namespace: str, policy: str, per_hour: int) -> int:
        times = self.recent.setdefault((namespace, policy), deque())
        while times and self.clock() - times[0] >= 3600:
            times.popleft()
        return per_hour - len(times)

    def next_slot_seconds(self, namespace: str, policy: str) -> float:
        times = self.recent.get((namespace, policy)) or deque([self.clock() - 3600])
        return max(0.0, 3600 - (self.clock() - times[0]))

    # --- the journal --------------------------------------------------------------------

    async def pending(self, namespace: str | None = None) -> list[Entry]:
        """Journaled recreations still to finish (in one namespace, or all)."""
        selector = f"{MANAGED_BY_LABEL}={NAME},{JOURNAL_LABEL}=recreate"
        if namespace:
            selector += f",{OWNED_NAMESPACE_LABEL}={namespace}"
        items = await self.store.list_configmaps(self.journal_namespace, selector)
        return [Entry.of(item) for item in items]

    async def _journal(self, entry: Entry) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": journal_name(entry.namespace, entry.service),
                "labels": {
                    MANAGED_BY_LABEL: NAME,
                    JOURNAL_LABEL: "recreate",
                    OWNED_NAMESPACE_LABEL: entry.namespace,
                },
            },
            "data": {
                "manifest": json.dumps(entry.manifest, sort_keys=True),
                "uid": entry.old_uid,
                "policy": entry.policy,
                "policyKind": entry.policy_kind,
            },
        }
        await self.store.create_configmap(self.journal_namespace, body)

    async def _forget(self, entry: Entry) -> None:
        with contextlib.suppress(NotFound):  # already gone
            await self.store.delete_configmap(
                self.journal_namespace, journal_name(entry.namespace, entry.service)
            )

    # --- recreation ---------------------------------------------------------------------

    async def recreate(
        self,
        namespace: str,
        name: str,
        policy: str,
        fields: Mapping[str, Any],
        per_hour: int,
        policy_kind: str = "DualStackPolicy",
    ) -> Outcome | None:
        """Journal, delete, create. None: nothing was done (the Service changed or went)."""
        service = await self.store.read_service(namespace, name)
        if service is None:
            return None
        meta = service.get("metadata") or {}
        entry = Entry(
            namespace,
            name,
            policy,
            str(meta.get("uid", "")),
            recreated_manifest(service, fields),
            policy_kind,
        )
        await self._journal(entry)  # nothing is deleted that is not written down first
        try:
            await self.store.delete_service(
                namespace, name, entry.old_uid, str(meta.get("resourceVersion", ""))
            )
        except (Conflict, NotFound):
            # Changed since we read it (the next pass decides again), or deleted by
            # someone else (not ours to bring back).
            await self._forget(entry)
            return None
        self.recent.setdefault((namespace, policy), deque()).append(self.clock())
        fault_point("after-delete")
        return await self.finish(entry)

    async def finish(self, entry: Entry) -> Outcome:
        """Creates the journaled Service unless it exists; the entry goes once it does."""
        current = await self.store.read_service(entry.namespace, entry.service)
        if current is not None:
            uid = str((current.get("metadata") or {}).get("uid", ""))
            if uid == entry.old_uid:
                await self._forget(entry)  # the delete never happened: decide again
                return Outcome(entry, False, "the Service was not deleted; nothing to finish")
            wanted = entry.manifest["spec"].get("ipFamilies")
            if (current.get("spec") or {}).get("ipFamilies") == wanted:
                await self._forget(entry)  # ours, created before the entry could go
                return Outcome(entry, True, "already recreated", current)
            return await self._taken(entry, uid)
        try:
            created = await self.store.create_service(entry.namespace, entry.manifest)
        except Conflict:
            # Taken between our look and our create (or still terminating).
            current = await self.store.read_service(entry.namespace, entry.service)
            if current is None:
                return Outcome(entry, False, "the old Service is still terminating; retrying")
            return await self._taken(entry, str(current["metadata"].get("uid", "")))
        except ApiError as err:
            return Outcome(entry, False, f"the API server refused to create it again: {err}")
        await self._forget(entry)
        return Outcome(entry, True, "recreated", created)

    async def _taken(self, entry: Entry, uid: str) -> Outcome:
        """Someone else's Service has the name now: never overwritten; the entry is kept."""
        await self.store.label_configmap(
            self.journal_namespace,
            journal_name(entry.namespace, entry.service),
            {JOURNAL_LABEL: "superseded"},
        )
        return Outcome(
            entry,
            True,
            f"the name was taken meanwhile by another Service (uid {uid}); it was left alone. "
            f"The old manifest is kept in ConfigMap {self.journal_namespace}/"
            f"{journal_name(entry.namespace, entry.service)}",
        )
