"""The proxy environment is read once, when the transport connects, not by aiohttp at
every request (its ``trust_env`` read the variables and ~/.netrc in a thread twice per
request: with the hand-offs to that thread, two fifths of the busy samples while
converging)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from dualstack_operator.kube.transport import Transport

SERVER = "https://api.example.test:6443"


def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{SERVER}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: abc}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""
    )
    return str(path)


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


async def connected(path: str) -> Transport:
    transport = Transport(kubeconfig=path)
    await transport.connect()
    return transport


async def test_requests_do_not_read_the_environment(tmp_path: Path, no_proxy_env: object) -> None:
    transport = await connected(kubeconfig(tmp_path))
    try:
        session = transport._api.rest_client.pool_manager
        assert session.trust_env is False
        assert not transport._api.configuration.proxy
        assert not session.closed  # the new session has the old one's connector
        assert session.connector is not None
        assert session.connector.limit > 32
    finally:
        await transport.close()
    assert session.closed


async def test_the_environments_proxy_is_kept(
    tmp_path: Path, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", "http://someone:secret@proxy.example.test:3128")
    transport = await connected(kubeconfig(tmp_path))
    try:
        configuration = transport._api.configuration
        assert configuration.proxy == "http://proxy.example.test:3128"
        expected = "Basic " + base64.b64encode(b"someone:secret").decode()
        assert configuration.proxy_headers == {"Proxy-Authorization": expected}
    finally:
        await transport.close()


async def test_no_proxy_is_honoured(tmp_path: Path, no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    no_proxy_env.setenv("NO_PROXY", ".example.test")
    transport = await connected(kubeconfig(tmp_path))
    try:
        assert not transport._api.configuration.proxy
    finally:
        await transport.close()
