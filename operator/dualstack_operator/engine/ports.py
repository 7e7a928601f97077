"""What the engine asks of the rest of the operator: the API calls of a pass (the kube
layer's adapters; recording fakes in the engine tests), the metrics it counts, and the
native admission objects it keeps in step. Protocols only: the engine imports none of
those layers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from dualstack_operator.api.models import IPFamily
from dualstack_operator.core.views import PolicyView


class ServiceWriter(Protocol):
    async def patch_service(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str
    ) -> None: ...


class StatusStore(Protocol):
    async def patch_policy_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...

    async def patch_cluster_policy_status(self, name: str, status: dict[str, Any]) -> None: ...


class EventSink(Protocol):
    async def post_event(
        self, involved: dict[str, str], type: str, reason: str, message: str
    ) -> None: ...


class MetricsSink(Protocol):
    def error(self, kind: str) -> None: ...
    def remediated(self, namespace: str, policy: str, ok: bool) -> None: ...
    def recreated(self, namespace: str, policy: str, ok: bool, addresses: str = "none") -> None: ...
    def reverted(self, namespace: str, policy: str) -> None: ...
    def timed(self, kind: str) -> AbstractContextManager[Any]: ...


class AdmissionSync(Protocol):
    """The native admission objects (``admission.native.NativeAdmission``)."""

    parameters: dict[str, Any]  # namespace -> what is known of its parameter
    legacy: dict[Any, str]  # earlier per-namespace objects still there

    def namespaces(self) -> set[str]: ...
    async def refresh(self) -> None: ...
    async def sync_guarded(
        self, namespace: str, policies: Iterable[PolicyView], cluster: Sequence[IPFamily]
    ) -> bool: ...
    async def sync_shared(self) -> int: ...
