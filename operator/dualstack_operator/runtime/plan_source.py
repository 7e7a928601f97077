"""What ``plan`` reads, over a fresh connection (the migration command's ``PlanSource``)."""

from __future__ import annotations

from dualstack_operator.kube.client import Client
from dualstack_operator.kube.policies import PolicyCalls
from dualstack_operator.kube.services import ServiceCalls
from dualstack_operator.kube.transport import Transport


class PlanCalls(ServiceCalls, PolicyCalls):
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.client = Client(transport)

    async def close(self) -> None:
        await self.transport.close()


async def connect(kubeconfig: str | None) -> PlanCalls:
    transport = Transport(kubeconfig)
    await transport.connect()
    return PlanCalls(transport)
