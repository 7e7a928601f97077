"""Two replicas configuring the webhook at once: the one refused (409) tries again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import kopf

from dualstack_operator.admission import webhook
from dualstack_operator.admission.configuration import WebhookOptions
from dualstack_operator.core.errors import Conflict
from dualstack_operator.observability.tls import ServerTLS


class RacingApi:
    """The other replica's create lands between our read and our create."""

    def __init__(self) -> None:
        self.stored: dict[str, Any] | None = None
        self.reads = 0
        self.applies: list[bool] = []  # whether each apply saw an existing object

    async def read_webhook_configuration(self, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.stored

    async def apply_webhook_configuration(
        self, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> None:
        self.applies.append(existing is not None)
        if existing is None and len(self.applies) == 1:
            self.stored = {"metadata": {"name": body["metadata"]["name"]}, "webhooks": []}
            raise Conflict(409, "the configuration already exists")
        self.stored = body


async def test_a_refused_create_is_read_again_and_replaced() -> None:
    api = RacingApi()
    options = WebhookOptions(
        address="127.0.0.1",
        port=0,
        host="127.0.0.1",
        service="dualstack-system/dualstack-operator-webhook:443",
        cert_dir=None,
        namespaces=(),
    )
    app = cast(
        Any,
        SimpleNamespace(
            configurations=api,
            server_tls=lambda hosts, _: ServerTLS.self_signed(hosts, "dualstack-test-"),
        ),
    )
    await webhook.start(kopf.OperatorSettings(), app, options)
    assert api.applies == [False, True], "created, refused, then replaced"
    assert api.reads == 2
    assert api.stored is not None
    assert api.stored["webhooks"], "our configuration is what is stored"
