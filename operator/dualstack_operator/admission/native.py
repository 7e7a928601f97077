"""Keeps the native admission objects in step with the policies.

Two parts: the four shared objects (one MutatingAdmissionPolicy and one
ValidatingAdmissionPolicy with their bindings, the same for every namespace), and
one ``DualStackAdmission`` parameter per governed namespace. The objects are the
operator's own (a label says so; nothing else is touched). What is on the server is
known from labelled lists at start and at every full resync, and from the answers to
our own writes in between: a namespace whose parameter already carries the hash of
what its policies compile to costs no request.

Per-namespace objects of earlier versions (``dualstack.dev.<namespace>``) are removed
only once the shared mutating policy is seen to serve (a dry-run probe comes back
marked by it): no governed namespace goes a moment without admission.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dualstack_operator.admission.cel import (
    PARAMETER_NAME,
    POLICY_NAME,
    PROBED,
    Kind,
    parameter,
    parameter_digest,
    shared_objects,
    spec_hash,
)
from dualstack_operator.api.models import MAX_ADMISSION_POLICIES, IPFamily
from dualstack_operator.api.names import MANAGED_BY_LABEL, NAME, OWNED_NAMESPACE_LABEL, PROBE_LABEL
from dualstack_operator.core.errors import ApiError, Conflict, NotFound
from dualstack_operator.core.views import PolicyView

log = logging.getLogger("dualstack_operator.admission.mutation")


class AdmissionStore(Protocol):
    """The calls this needs (``KubeAPI``; a recording fake in unit tests)."""

    async def list_admission_objects(self, kind: Kind, selector: str) -> list[dict[str, Any]]: ...

    async def create_admission_object(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]: ...

    async def replace_admission_object(
        self, kind: Kind, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def delete_admission_object(self, kind: Kind, name: str) -> None: ...

    async def list_admission_parameters(
        self, namespaces: tuple[str, ...], selector: str
    ) -> list[dict[str, Any]]: ...

    async def create_admission_parameter(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def replace_admission_parameter(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def delete_admission_parameter(self, namespace: str, name: str) -> None: ...

    async def dry_run_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Seen:
    """What we know of one object on the server."""

    hash: str
    resource_version: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Seen:
        meta = obj.get("metadata") or {}
        return cls(hash=spec_hash(obj), resource_version=str(meta.get("resourceVersion", "")))


SELECTOR = f"{MANAGED_BY_LABEL}={NAME}"


class NativeAdmission:
    """The namespaces' admission parameters and the shared policies: compiled from the
    policies when enabled, else removed.

    Disabled (admission off, or the webhook chosen), it only removes what an earlier run
    with native admission left behind. A namespaced operator keeps (or removes) the
    parameters of its namespaces; the shared objects, which other instances may use, are
    removed only by a cluster-wide one.
    """

    def __init__(self, store: AdmissionStore, enabled: bool, namespaces: Sequence[str]) -> None:
        self.store = store
        self.enabled = enabled
        self.watched = tuple(sorted(namespaces))
        self.parameters: dict[str, Seen] = {}  # namespace -> its DualStackAdmission
        self.shared: dict[Kind, Seen] = {}
        self.legacy: dict[tuple[Kind, str], str] = {}  # (kind, name) -> its namespace
        self.served = False  # the shared mutating policy was seen to serve

    def namespaces(self) -> set[str]:
        """Namespaces that have objects of ours (a pass must look at them, policy or not)."""
        return set(self.parameters) | set(self.legacy.values())

    async def refresh(self) -> None:
        """Re-reads what is on the server (at start, at each full resync, after a conflict)."""
        shared: dict[Kind, Seen] = {}
        legacy: dict[tuple[Kind, str], str] = {}
        for kind in Kind:
            try:
                items = await self.store.list_admission_objects(kind, SELECTOR)
            except NotFound:
                continue  # not served by this API server (before v1.36): nothing of ours
            except ApiError as err:
                if self.enabled:
                    raise
                # Only cleaning up, maybe without the rights to (an older ClusterRole).
                log.debug("cannot list %s to clean up: %s", kind, err)
                continue
            for obj in items:
                meta = obj["metadata"]
                namespace = str((meta.get("labels") or {}).get(OWNED_NAMESPACE_LABEL, ""))
                if meta["name"] == POLICY_NAME:
                    shared[kind] = Seen.of(obj)
                elif namespace and (not self.watched or namespace in self.watched):
                    legacy[(kind, str(meta["name"]))] = namespace
        self.shared, self.legacy = shared, legacy
        try:
            found = await self.store.list_admission_parameters(self.watched, SELECTOR)
        except ApiError as err:
            if self.enabled:
                raise
            log.debug("cannot list the admission parameters to clean up: %s", err)
            found = []
        self.parameters = {
            str(obj["metadata"]["namespace"]): Seen.of(obj)
            for obj in found
            if obj["metadata"].get("name") == PARAMETER_NAME
        }

    async def sync(
        self, namespace: str, policies: Iterable[PolicyView], cluster: Sequence[IPFamily]
    ) -> int:
        """Creates, updates or deletes the namespace's parameter; returns the writes made."""
        try:
            return await self._sync(namespace, policies, cluster)
        except Conflict:
            # Someone else wrote (another replica, a hand edit): look again, try once more.
            await self.refresh()
            return await self._sync(namespace, policies, cluster)

    async def _sync(
        self, namespace: str, policies: Iterable[PolicyView], cluster: Sequence[IPFamily]
    ) -> int:
        policies = list(policies)
        if len(policies) > MAX_ADMISSION_POLICIES:
            log.warning(
                "namespace %s has %d policies: admission follows the oldest %d "
                "(the reconciler, all of them)",
                namespace,
                len(policies),
                MAX_ADMISSION_POLICIES,
            )
        seen = self.parameters.get(namespace)
        wanted_hash = parameter_digest(policies, cluster) if self.enabled else None
        if seen is not None and seen.hash == wanted_hash:
            return 0  # in step: nothing is built
        wanted = parameter(namespace, policies, cluster) if wanted_hash else None
        if wanted is None:
            if seen is None:
                return 0
            with contextlib.suppress(NotFound):  # already gone
                await self.store.delete_admission_parameter(namespace, PARAMETER_NAME)
            log.info("deleted the admission parameter of namespace %s", namespace)
            del self.parameters[namespace]
            return 1
        if seen is None:
            made = await self.store.create_admission_parameter(wanted)
            log.info("created the admission parameter of namespace %s", namespace)
        else:
            meta = {**wanted["metadata"], "resourceVersion": seen.resource_version}
            made = await self.store.replace_admission_parameter({**wanted, "metadata": meta})
            log.info("updated the admission parameter of namespace %s", namespace)
        self.parameters[namespace] = Seen.of(made)
        return 1

    async def sync_guarded(
        self, namespace: str, policies: Iterable[PolicyView], cluster: Sequence[IPFamily]
    ) -> bool:
        """``sync``, with failures logged rather than raised: False if it did not finish."""
        try:
            await self.sync(namespace, policies, cluster)
        except ApiError as err:
            log.warning("cannot keep the admission parameter of namespace %s: %s", namespace, err)
            return False
        return True

    async def sync_shared(self) -> int:
        """The shared objects in step (or gone), then the earlier per-namespace objects
        retired; after the namespaces' parameters, so a new policy finds them. Returns
        the writes made."""
        writes = 0
        if self.enabled:
            for obj in shared_objects():
                kind = Kind(obj["kind"])
                seen = self.shared.get(kind)
                if seen is not None and seen.hash == spec_hash(obj):
                    continue
                if seen is None:
                    made = await self.store.create_admission_object(kind, obj)
                    log.info("created %s %s", kind, POLICY_NAME)
                else:
                    meta = {**obj["metadata"], "resourceVersion": seen.resource_version}
                    made = await self.store.replace_admission_object(
                        kind, {**obj, "metadata": meta}
                    )
                    log.info("updated %s %s", kind, POLICY_NAME)
                    self.served = False  # the server compiles the new version anew
                self.shared[kind] = Seen.of(made)
                writes += 1
            if self.legacy and not await self._serves():
                return writes  # the earlier objects keep serving meanwhile
        elif not self.watched:
            for kind in sorted(self.shared, key=list(Kind).index, reverse=True):
                with contextlib.suppress(NotFound):
                    await self.store.delete_admission_object(kind, POLICY_NAME)
                log.info("deleted %s %s", kind, POLICY_NAME)
                writes += 1
            self.shared = {}
        for kind, name in sorted(self.legacy, key=lambda k: list(Kind).index(k[0]), reverse=True):
            with contextlib.suppress(NotFound):
                await self.store.delete_admission_object(kind, name)
            log.info("deleted %s %s (per-namespace, of an earlier version)", kind, name)
            del self.legacy[(kind, name)]
            writes += 1
        return writes

    async def _serves(self) -> bool:
        """Whether the API server applies the shared mutating policy now: a dry-run probe
        in a namespace with a parameter comes back marked by it."""
        if self.served:
            return True
        if not self.parameters:
            return True  # no namespace is governed: nothing can go without admission
        namespace = sorted(self.parameters)[0]
        probe = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": f"dualstack-probe-{uuid.uuid4().hex[:8]}",
                "labels": {PROBE_LABEL: "request"},
            },
            "spec": {"ports": [{"port": 80}]},
        }
        try:
            answer = await self.store.dry_run_service(namespace, probe)
        except ApiError as err:
            log.warning("cannot probe the shared admission policy in %s: %s", namespace, err)
            return False
        labels = (answer.get("metadata") or {}).get("labels") or {}
        self.served = labels.get(PROBE_LABEL) == PROBED
        if not self.served:
            log.info("the shared admission policy does not serve yet; the earlier ones stay")
        return self.served
