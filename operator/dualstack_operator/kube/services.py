"""Services' fast paths: the cache's list and watch of views, the one write the reconciler
makes (a server-side apply of the two family fields), recreation's read, create and
delete, and what the cluster's service network offers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from dualstack_operator.api.models import IPFamily
from dualstack_operator.core.errors import ApiError, Forbidden, Invalid, NotFound
from dualstack_operator.core.views import Page, ServiceView, SliceView, WatchEvent, families_of
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.resources import (
    ENDPOINT_SLICES,
    SERVICE_CIDRS,
    SERVICES,
    SERVICES_RESOURCE,
)


class ServiceCalls:
    """What the Service and EndpointSlice caches, the writes and recreation ask of Services."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def list_services(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[ServiceView]:
        return await self.client.list_page(SERVICES, namespace, limit, continue_token)

    def watch_services(
        self, namespace: str | None, resource_version: str, timeout_seconds: int, silence: int
    ) -> AsyncIterator[WatchEvent[ServiceView]]:
        return self.client.watch(SERVICES, namespace, resource_version, timeout_seconds, silence)

    async def list_endpoint_slices(
        self, namespace: str | None, limit: int, continue_token: str | None
    ) -> Page[SliceView]:
        return await self.client.list_page(ENDPOINT_SLICES, namespace, limit, continue_token)

    def watch_endpoint_slices(
        self, namespace: str | None, resource_version: str, timeout_seconds: int, silence: int
    ) -> AsyncIterator[WatchEvent[SliceView]]:
        return self.client.watch(
            ENDPOINT_SLICES, namespace, resource_version, timeout_seconds, silence
        )

    async def patch_service(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str
    ) -> None:
        """Server-side applies the family fields as the operator, only if the Service is
        unchanged since we looked.

        ``patch`` must hold both fields (an apply that leaves out a field we own would
        drop it). Forced: fields last written by Update (kubectl patch, an imperative
        client) are fair game; fields another manager *applies* were already judged
        (ManagedByOther, or fieldConflicts: Force).
        """
        meta = {"name": name, "namespace": namespace, "resourceVersion": resource_version}
        body = {"apiVersion": "v1", "kind": "Service", "metadata": meta, **patch}
        await self.client.apply(SERVICES_RESOURCE, body)

    async def read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The whole Service as the server has it, or None."""
        return await self.client.get(SERVICES_RESOURCE, name, namespace)

    async def delete_service(
        self, namespace: str, name: str, uid: str, resource_version: str
    ) -> None:
        """Deletes exactly the Service we read: preconditions on its uid and version."""
        preconditions = {"uid": uid, "resourceVersion": resource_version}
        await self.client.delete(SERVICES_RESOURCE, name, namespace, preconditions)

    async def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.create(SERVICES_RESOURCE, body, namespace)

    async def dry_run_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """What the API server would store for this Service (admission included); nothing
        is stored."""
        return await self.client.create(SERVICES_RESOURCE, body, namespace, dry_run=True)

    async def service_cidrs(self) -> list[str] | None:
        """The default ServiceCIDR's ranges, or None where that API is missing."""
        try:
            cidr = await self.client.get(SERVICE_CIDRS, "kubernetes")
        except Forbidden:
            return None
        if cidr is None:
            return None
        return list((cidr.get("spec") or {}).get("cidrs") or [])

    async def service_cidr_families(self) -> list[IPFamily] | None:
        """Families of the default ServiceCIDR, or None where that API is missing."""
        cidrs = await self.service_cidrs()
        return None if cidrs is None else families_of(cidrs)

    async def list_service_cidr_families(self) -> list[IPFamily] | None:
        """The default ServiceCIDR's families by listing (the plan's only right), or None."""
        try:
            items = await self.client.list(SERVICE_CIDRS)
        except (Forbidden, NotFound):
            return None
        for item in items:
            if (item.get("metadata") or {}).get("name") == "kubernetes":
                return families_of(list((item.get("spec") or {}).get("cidrs") or []))
        return None

    async def probe_families(self) -> list[IPFamily]:
        """Server-side dry-run creates: what a RequireDualStack (else default) Service gets."""
        for policy in ("RequireDualStack", None):
            spec: dict[str, Any] = {"ports": [{"port": 80}]}
            if policy:
                spec["ipFamilyPolicy"] = policy
            body = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"dualstack-probe-{uuid.uuid4().hex[:8]}"},
                "spec": spec,
            }
            try:
                created = await self.client.create(SERVICES_RESOURCE, body, "default", True)
            except Invalid:
                if policy:
                    continue  # "not configured for dual-stack services"
                raise
            return [IPFamily(f) for f in (created.get("spec") or {}).get("ipFamilies") or []]
        raise ApiError(0, "the dry-run probe returned no families")
