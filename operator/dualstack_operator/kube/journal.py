"""The recreation journal's ConfigMaps, in the operator's own namespace."""

from __future__ import annotations

from typing import Any

from dualstack_operator.kube.client import Client
from dualstack_operator.kube.resources import CONFIGMAPS
from dualstack_operator.kube.services import ServiceCalls


class JournalCalls:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def list_configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return await self.client.list(CONFIGMAPS, namespace, selector)

    async def create_configmap(self, namespace: str, body: dict[str, Any]) -> None:
        await self.client.create(CONFIGMAPS, body, namespace)

    async def label_configmap(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        await self.client.merge_patch(CONFIGMAPS, name, {"metadata": {"labels": labels}}, namespace)

    async def delete_configmap(self, namespace: str, name: str) -> None:
        await self.client.delete(CONFIGMAPS, name, namespace)


class RecreationCalls(ServiceCalls, JournalCalls):
    """What recreation asks: the Service's read, delete and create, and the journal."""
