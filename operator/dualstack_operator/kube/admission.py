"""The admission objects: the native policies and their parameters, the webhook's
configuration, and the dry-run probe that the shared policy serves."""

from __future__ import annotations

from typing import Any

from dualstack_operator.kube.client import Client
from dualstack_operator.kube.resources import (
    ADMISSION,
    ADMISSION_OBJECTS,
    ADMISSION_PARAMETERS,
    SERVICES_RESOURCE,
    WEBHOOK_CONFIGURATIONS,
)


class AdmissionCalls:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def list_admission_objects(self, kind: str, selector: str) -> list[dict[str, Any]]:
        return await self.client.list(ADMISSION_OBJECTS[kind], selector=selector)

    async def create_admission_object(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.create(ADMISSION_OBJECTS[kind], body)

    async def replace_admission_object(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.replace(ADMISSION_OBJECTS[kind], body)

    async def delete_admission_object(self, kind: str, name: str) -> None:
        await self.client.delete(ADMISSION_OBJECTS[kind], name)

    async def list_admission_parameters(
        self, namespaces: tuple[str, ...], selector: str
    ) -> list[dict[str, Any]]:
        """Our DualStackAdmissions, in these namespaces (or all of them)."""
        items: list[dict[str, Any]] = []
        for ns in namespaces or (None,):
            items += await self.client.list(ADMISSION_PARAMETERS, ns, selector)
        return items

    async def create_admission_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.create(ADMISSION_PARAMETERS, body, body["metadata"]["namespace"])

    async def replace_admission_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.replace(ADMISSION_PARAMETERS, body)

    async def delete_admission_parameter(self, namespace: str, name: str) -> None:
        await self.client.delete(ADMISSION_PARAMETERS, name, namespace)

    async def dry_run_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """What the API server would store for this Service (admission included)."""
        return await self.client.create(SERVICES_RESOURCE, body, namespace, dry_run=True)

    async def served_admission_resources(self) -> set[str]:
        """The resources ``admissionregistration.k8s.io/v1`` serves (discovery)."""
        return await self.client.served(ADMISSION)

    async def read_webhook_configuration(self, name: str) -> dict[str, Any] | None:
        return await self.client.get(WEBHOOK_CONFIGURATIONS, name)

    async def apply_webhook_configuration(
        self, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> None:
        """Creates the configuration, or replaces ours (keeping others' metadata)."""
        if existing is None:
            await self.client.create(WEBHOOK_CONFIGURATIONS, body)
            return
        meta = dict(existing.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), **body["metadata"]["labels"]}
        await self.client.replace(WEBHOOK_CONFIGURATIONS, {**body, "metadata": meta})

    async def delete_webhook_configuration(self, name: str) -> None:
        """Deletes the configuration if it is there."""
        if await self.client.get(WEBHOOK_CONFIGURATIONS, name) is not None:
            await self.client.delete(WEBHOOK_CONFIGURATIONS, name)
