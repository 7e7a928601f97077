"""Kopf's peering object: made at start if missing, read by the active/standby gate."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

from dualstack_operator.core.errors import Conflict, NotFound
from dualstack_operator.core.views import PeerRecord
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.resources import CLUSTER_PEERINGS, PEERINGS, Resource


def peer_records(obj: dict[str, Any] | None) -> list[PeerRecord]:
    """The peers in a peering object's status (kopf's layout), malformed entries left out."""
    peers: list[PeerRecord] = []
    for ident, info in ((obj or {}).get("status") or {}).items():
        if not isinstance(info, dict):
            continue
        try:
            seen = datetime.datetime.fromisoformat(str(info.get("lastseen")))
            record = PeerRecord(
                identity=str(ident),
                priority=int(info.get("priority", 0)),
                lifetime=float(info.get("lifetime", 60)),
                lastseen=seen if seen.tzinfo else seen.replace(tzinfo=datetime.UTC),
            )
        except (TypeError, ValueError):
            continue
        peers.append(record)
    return peers


class PeeringCalls:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def ensure_peering(self, name: str, namespaces: tuple[str, ...]) -> None:
        """Creates kopf's peering object if missing (cluster-wide, or per namespace)."""
        targets: list[tuple[Resource, str | None]] = [(PEERINGS, ns) for ns in namespaces]
        targets = targets or [(CLUSTER_PEERINGS, None)]
        for resource, ns in targets:
            body = {"apiVersion": "kopf.dev/v1", "kind": resource.kind, "metadata": {"name": name}}
            with contextlib.suppress(Conflict):  # already there: the usual case
                await self.client.create(resource, body, ns)

    async def read_peers(self, name: str, namespaces: tuple[str, ...]) -> list[PeerRecord]:
        """Kopf's peer records in the peering object."""
        if namespaces:
            obj = await self.client.get(PEERINGS, name, namespaces[0])
        else:
            obj = await self.client.get(CLUSTER_PEERINGS, name)
        if obj is None:
            raise NotFound(404, f"the peering object {name} is gone")
        return peer_records(obj)
