"""What ``plan`` reads, over a fresh connection (the migration command's ``PlanSource``)."""

from __future__ import annotations

from kubernetes_asyncio.config import ConfigException

from dualstack_operator.core.errors import Forbidden
from dualstack_operator.core.views import NetworkPolicyView, ServiceView
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.policies import PolicyCalls
from dualstack_operator.kube.resources import NETWORK_POLICIES, SERVICES_RESOURCE
from dualstack_operator.kube.services import ServiceCalls
from dualstack_operator.kube.transport import Transport
from dualstack_operator.migration.command import PlanInputError


class PlanCalls(ServiceCalls, PolicyCalls):
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.client = Client(transport)

    async def list_network_policies(self, namespace: str | None) -> list[NetworkPolicyView] | None:
        """Every page of NetworkPolicies; None without the right to list them."""
        views: list[NetworkPolicyView] = []
        token: str | None = None
        try:
            while True:
                page = await self.client.list_page(NETWORK_POLICIES, namespace, 500, token)
                views += page.items
                token = page.continue_token
                if not token:
                    return views
        except Forbidden:
            return None

    async def get_service(self, namespace: str, name: str) -> ServiceView | None:
        """One Service (None: there is none), listed by name: the right to list Services,
        which the plan needs anyway, is enough. Forbidden without it."""
        found = await self.client.list(
            SERVICES_RESOURCE, namespace, fieldSelector=f"metadata.name={name}"
        )
        return ServiceView.from_body(found[0]) if found else None

    async def close(self) -> None:
        await self.transport.close()


async def connect(kubeconfig: str | None, context: str | None = None) -> PlanCalls:
    transport = Transport(kubeconfig, context)
    try:
        await transport.connect()
    except ConfigException as err:  # no such context, no kubeconfig: one clear line
        raise PlanInputError(f"kubeconfig: {err}") from err
    return PlanCalls(transport)


def contexts(kubeconfig: str | None) -> list[str]:
    try:
        return Transport.contexts(kubeconfig)
    except ConfigException as err:
        raise PlanInputError(f"kubeconfig: {err}") from err
