"""What ``plan`` reads, over a fresh connection (the migration command's ``PlanSource``)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
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
    except (ConfigException, OSError, yaml.YAMLError) as err:  # one clear line
        where = f"context {context}" if context else "the current context"
        raise PlanInputError(f"kubeconfig, {where}: {err}") from err
    return PlanCalls(transport)


def kubeconfig_paths(kubeconfig: str | None) -> list[Path]:
    """The files kubectl reads, in its order: the flag, else $KUBECONFIG, else ~/.kube/config."""
    if kubeconfig:
        return [Path(kubeconfig)]
    listed = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return listed or [Path.home() / ".kube" / "config"]


def contexts(kubeconfig: str | None) -> list[str]:
    """The context names of the kubeconfig (merged as kubectl merges: the first wins)."""
    names: list[str] = []
    for path in kubeconfig_paths(kubeconfig):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            continue
        except (OSError, yaml.YAMLError) as err:
            raise PlanInputError(f"kubeconfig {path}: {err}") from err
        for entry in doc.get("contexts") or [] if isinstance(doc, dict) else []:
            name = str((entry or {}).get("name") or "")
            if name and name not in names:
                names.append(name)
    return names
