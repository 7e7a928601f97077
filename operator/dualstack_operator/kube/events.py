"""The event recorder: Normal and Warning Events on Services and policies."""

from __future__ import annotations

import datetime

from dualstack_operator.api.names import FIELD_MANAGER
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.resources import EVENTS


class EventRecorder:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def post_event(
        self, involved: dict[str, str], type: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event on ``involved`` (apiVersion, kind, namespace, name, uid).

        A cluster-scoped object's Events go to the ``default`` namespace, as kubectl
        looks for them there.
        """
        namespace = involved["namespace"] or "default"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{involved['name']}.", "namespace": namespace},
            "involvedObject": involved,
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.client.create(EVENTS, event, namespace)
