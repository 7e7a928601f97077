"""Kopf wiring of the admission webhook (imported only with ``run --admission``).

Kopf serves the webhook; the operator manages the MutatingWebhookConfiguration
itself, because kopf's managed one allows a 30 s timeout and every namespace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import kopf
from aiohttp import web

from dualstack_operator.admission.configuration import (
    WEBHOOK_ID,
    WebhookOptions,
    webhook_configuration,
)
from dualstack_operator.admission.mutation import malformed_review, mutation
from dualstack_operator.api.names import CA_INJECTION_ANNOTATION
from dualstack_operator.core.errors import Conflict
from dualstack_operator.core.views import PolicyView

log = logging.getLogger("dualstack_operator.admission.webhook")


class PolicyViews(Protocol):
    cluster: Any  # .families: the cluster's families, primary first

    def policies_in(self, namespace: str) -> list[PolicyView]: ...


class ConfigurationStore(Protocol):
    async def read_webhook_configuration(self, name: str) -> dict[str, Any] | None: ...

    async def apply_webhook_configuration(
        self, body: dict[str, Any], existing: dict[str, Any] | None
    ) -> None: ...


class Certificate(Protocol):
    """A server certificate that follows its renewals (``observability.tls.ServerTLS``)."""

    cert: Path
    key: Path
    context: ssl.SSLContext

    def ca_bundle(self) -> bytes: ...


class Context(Protocol):
    """What the webhook needs of the running operator (kopf's memo holds it as ``app``)."""

    started: asyncio.Event  # set once the caches and the client are up
    webhook: WebhookOptions | None

    def server_tls(self, hosts: Sequence[str], cert_dir: Path | None) -> Certificate: ...

    @property
    def views(self) -> PolicyViews | None: ...

    @property
    def configurations(self) -> ConfigurationStore: ...


@kopf.on.mutate(
    "",
    "v1",
    "services",
    id=WEBHOOK_ID,
    operations=["CREATE"],
    side_effects=False,
    ignore_failures=True,
)
async def born_compliant(
    body: kopf.Body,
    patch: kopf.Patch,
    warnings: list[str],
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    app: Context = memo["app"]
    views = app.views
    if views is None or not namespace:
        return  # not started yet: the API server's defaults apply (failurePolicy Ignore)
    # Every replica answers the webhook Service, a standby too: its caches are its own
    # reflectors', which peering does not pause, so they are as current as the active's.
    result = mutation(views.policies_in(namespace), dict(body), views.cluster.families)
    if result.warning:
        warnings.append(result.warning)
    if result.spec:
        for key, value in result.spec.items():
            patch.spec[key] = value


class GuardedWebhookServer(kopf.WebhookServer):
    """Kopf's webhook server, answering 400 to any body that is not a well-formed
    AdmissionReview before kopf (or a handler) sees it."""

    @staticmethod
    async def _serve(fn: Any, request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError) as err:
            raise web.HTTPBadRequest(reason="the body is not JSON") from err
        reason = malformed_review(doc)
        if reason is not None:
            raise web.HTTPBadRequest(reason=reason)
        response: web.Response = await kopf.WebhookServer._serve(fn, request)
        return response


@kopf.on.startup()
async def serve(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    """The webhook's own startup: once the operator has started, serve and configure it."""
    app: Context = memo["app"]
    if app.webhook is not None:
        await app.started.wait()
        await start(settings, app, app.webhook)


async def start(settings: kopf.OperatorSettings, app: Context, options: WebhookOptions) -> None:
    """Serve the webhook and point the API server at it."""
    hosts = [options.host] if options.host else ["127.0.0.1"]
    if options.service:
        ns, name = options.service.split(":")[0].split("/")
        hosts += [f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
    # The certificate is reloaded when it is renewed (the context is the server's own);
    # the CA goes into the caBundle at start.
    tls = app.server_tls(hosts, options.cert_dir)
    ca = tls.ca_bundle()
    settings.admission.server = GuardedWebhookServer(
        addr=options.address,
        port=options.port,
        context=tls.context,
        certfile=str(tls.cert),
        pkeyfile=str(tls.key),
    )
    if options.service:
        ref, _, port = options.service.partition(":")
        ns, name = ref.split("/")
        client_config: dict[str, Any] = {
            "service": {
                "namespace": ns,
                "name": name,
                "path": f"/{WEBHOOK_ID}",
                "port": int(port or 443),
            }
        }
    else:
        client_config = {"url": f"https://{options.host}:{options.port}/{WEBHOOK_ID}"}
    own = options.service.split("/")[0] if options.service else None
    # Replicas start together and write the same configuration: one's create or
    # update is refused (409) when another's landed first; read it again and retry.
    for attempt in range(1, CONFIGURE_ATTEMPTS + 1):
        body = webhook_configuration(client_config, options.namespaces, own)
        existing = await app.configurations.read_webhook_configuration(body["metadata"]["name"])
        _with_ca_bundle(body, existing, ca)
        try:
            await app.configurations.apply_webhook_configuration(body, existing)
            break
        except Conflict:
            if attempt == CONFIGURE_ATTEMPTS:
                raise
    log.info("admission webhook: %s", client_config)


CONFIGURE_ATTEMPTS = 5


def _with_ca_bundle(body: dict[str, Any], existing: dict[str, Any] | None, ca: bytes) -> None:
    """Our CA into each webhook's caBundle, unless cert-manager's injector owns it."""
    annotations = ((existing or {}).get("metadata") or {}).get("annotations") or {}
    injected = bool(annotations.get(CA_INJECTION_ANNOTATION))
    for hook in body["webhooks"]:
        if injected:
            # cert-manager's CA injector owns caBundle: keep what it wrote.
            old = {h["name"]: h for h in (existing or {}).get("webhooks", [])}
            bundle = old.get(hook["name"], {}).get("clientConfig", {}).get("caBundle")
            if bundle:
                hook["clientConfig"]["caBundle"] = bundle
        else:
            hook["clientConfig"]["caBundle"] = base64.b64encode(ca).decode()
