"""The one boundary to the API server: every request and every failure passes here.

Requests go through kubernetes-asyncio's client for its configuration (kubeconfig,
in-cluster ServiceAccount, TLS, token refresh), but raw: the bodies are read as JSON
and reduced by the caller, never turned into the generated client's models (at
scale the operator never needs them). Every failure leaves as one of
``core.errors``' typed ``ApiError``s: an HTTP status, a broken connection, a timeout,
a body that is not JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from yarl import URL

from dualstack_operator.core.errors import ApiError, classify, retry_after

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML
REQUEST_CONNECTIONS = 32  # room for the concurrent writes, with the caches' lists
READ_BUFFER = 2**21  # a watch event carries a whole object: etcd allows 1.5 MiB (as the client)

Query = Sequence[tuple[str, Any]]

# What a broken connection raises below the generated client.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def message_of(body: str | bytes | None, default: str) -> str:
    """The ``message`` of a Status the server answered with, else ``default``."""
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        return str(json.loads(body or b"{}").get("message", default))
    return default


def decode(raw: bytes) -> dict[str, Any]:
    """A response body as JSON; one that is not (a cut connection, say) is a failed request."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ApiError(0, f"the API server's answer is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ApiError(0, "the API server's answer is not a JSON object")
    return doc


def env_proxy(host: str) -> tuple[str, dict[str, str]] | None:
    """The proxy the environment names for the API server at ``host`` (HTTPS_PROXY,
    NO_PROXY and the rest, as aiohttp reads them), and its Proxy-Authorization header."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(host))
    except LookupError:
        return None
    return str(proxy), ({"Proxy-Authorization": auth.encode()} if auth else {})


def environment_read_once(api: client.ApiClient) -> None:
    """The client's session without ``trust_env``, which made aiohttp read the proxy
    variables and ~/.netrc in a worker thread twice per request (py-spy over a
    convergence, hack/bench.py --profile: 18 % of the busy samples, and 22 % more in
    the hand-offs to that thread and back). The proxy is read once instead
    (``connect``); the API server's credentials come from the kubeconfig or the
    ServiceAccount, never from a netrc."""
    rest: Any = api.rest_client
    session: aiohttp.ClientSession = rest.pool_manager
    connector = session.connector
    session.detach()  # the connector is kept, with its TLS context and pool size
    rest.pool_manager = aiohttp.ClientSession(
        connector=connector, trust_env=False, read_bufsize=READ_BUFFER
    )


class Transport:
    """A connection to one API server, and the only code that sends it requests."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        self._client: client.ApiClient | None = None
        self._kubeconfig = kubeconfig
        self._context = context  # a kubeconfig context (the plan's --context)

    async def connect(self, watches: int = 1) -> None:
        """In-cluster ServiceAccount first, else the kubeconfig (as kopf does).

        ``watches``: the watches kept open through this connection pool; each holds a
        pooled connection for good, so the pool has room for them on top of the
        requests in flight (writes, lists, reviews).
        """
        configuration = client.Configuration()
        try:
            if self._context:
                raise config.ConfigException("a context is asked for: the kubeconfig has it")
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            await config.load_kube_config(
                config_file=self._kubeconfig,
                context=self._context,
                client_configuration=configuration,
            )
        configuration.connection_pool_maxsize = REQUEST_CONNECTIONS + watches
        if not configuration.proxy and (found := env_proxy(str(configuration.host))):
            configuration.proxy, configuration.proxy_headers = found
        self._client = client.ApiClient(configuration)
        environment_read_once(self._client)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    @property
    def _api(self) -> client.ApiClient:
        if self._client is None:
            raise RuntimeError("Transport.connect() was not awaited")
        return self._client

    async def open(
        self,
        method: str,
        path: str,
        query: Query = (),
        body: Any = None,
        content_type: str = JSON,
        read_timeout: Any = None,
    ) -> Any:
        """Sends one request: the raw aiohttp response if it succeeded, else a typed error."""
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            resp = await self._api.call_api(
                path,
                method,
                query_params=list(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=read_timeout,
            )
        except ApiException as exc:
            raw_headers: Any = exc.headers or {}
            raise classify(
                int(exc.status or 0),
                message_of(exc.body, str(exc.reason)),
                retry_after(raw_headers.get("Retry-After")),
            ) from exc
        except TRANSPORT_ERRORS as exc:
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= resp.status <= 299:
            try:
                raw = await resp.read()
            except TRANSPORT_ERRORS:
                raw = b""
            finally:
                resp.release()
            raise classify(
                resp.status,
                message_of(raw, resp.reason or str(resp.status)),
                retry_after(resp.headers.get("Retry-After")),
            )
        return resp

    async def request(
        self,
        method: str,
        path: str,
        query: Query = (),
        body: Any = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        """One request's JSON answer (see ``open``)."""
        resp = await self.open(method, path, query, body, content_type)
        try:
            raw: bytes = await resp.read()
        except TRANSPORT_ERRORS as exc:
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
        finally:
            resp.release()
        return decode(raw) if raw else {}

    async def lines(self, path: str, query: Query, silence: int) -> AsyncIterator[dict[str, Any]]:
        """A watch stream's events, one JSON object a line, until the server ends it.

        The server ends a watch (its timeoutSeconds); ``silence`` only bounds how long
        a connection that went quiet (a partition) is trusted.
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=silence)
        resp = await self.open("GET", path, query, read_timeout=timeout)
        try:
            while True:
                try:
                    line = await resp.content.readline()
                except TRANSPORT_ERRORS as exc:
                    raise ApiError(0, f"watch broken: {type(exc).__name__}: {exc}") from exc
                if not line:
                    return  # the server ended the watch (its timeout, or shutting down)
                yield decode(line)
        finally:
            resp.release()


def query_of(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Query parameters without the unset ones."""
    return [(k, v) for k, v in params.items() if v is not None and v != ""]
