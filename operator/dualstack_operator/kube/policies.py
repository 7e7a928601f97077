"""Policies: their status, written by server-side apply, and the lists the plan reads."""

from __future__ import annotations

from typing import Any

from dualstack_operator.api import names
from dualstack_operator.core.errors import Forbidden, NotFound
from dualstack_operator.core.views import PolicyView
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.resources import (
    CLUSTER_POLICIES_RESOURCE,
    NAMESPACES_RESOURCE,
    POLICIES_RESOURCE,
    Resource,
)


def status_apply(
    kind: str, name: str, namespace: str | None, status: dict[str, Any]
) -> dict[str, Any]:
    """A policy's status as a server-side apply by the operator's field manager: the
    fields it sends are its own (a field it stops sending is removed), and conditions
    other controllers add (the list is a map keyed by type) stay theirs."""
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": names.API_VERSION, "kind": kind, "metadata": meta, "status": status}


class PolicyCalls:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def patch_policy_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        body = status_apply(names.KIND, name, namespace, status)
        await self.client.apply(POLICIES_RESOURCE, body, "status")

    async def patch_cluster_policy_status(self, name: str, status: dict[str, Any]) -> None:
        body = status_apply(names.CLUSTER_KIND, name, None, status)
        await self.client.apply(CLUSTER_POLICIES_RESOURCE, body, "status")

    async def list_policies(self, namespaces: tuple[str, ...]) -> list[PolicyView]:
        """Every DualStackPolicy (in these namespaces, or anywhere), as views."""
        views: list[PolicyView] = []
        for ns in namespaces or (None,):
            views += [
                PolicyView.from_body(i) for i in await self.client.list(POLICIES_RESOURCE, ns)
            ]
        return views

    async def list_cluster_policies(self) -> list[PolicyView]:
        """Every ClusterDualStackPolicy; none where the CRD or the right to list is missing."""
        return [
            PolicyView.from_body(item, cluster=True)
            for item in await self._list_or_none(CLUSTER_POLICIES_RESOURCE)
        ]

    async def list_namespace_labels(self) -> dict[str, dict[str, str]]:
        return {
            str(item["metadata"]["name"]): dict(item["metadata"].get("labels") or {})
            for item in await self.client.list(NAMESPACES_RESOURCE)
        }

    async def _list_or_none(self, resource: Resource) -> list[dict[str, Any]]:
        try:
            return await self.client.list(resource)
        except (Forbidden, NotFound):
            return []

    async def served_policy_resources(self) -> set[str]:
        """The resources ``dualstack.dev/v1alpha1`` serves: empty before the CRDs."""
        return await self.client.served(names.API_VERSION)
