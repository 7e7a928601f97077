"""The liveness probe: it reports a component loop that stopped, and it answers on both
families, as a kubelet on an IPv6-only cluster probes it."""

from __future__ import annotations

import asyncio

import aiohttp

from dualstack_operator.observability.health import serve_liveness
from dualstack_operator.runtime.handlers import App
from dualstack_operator.runtime.settings import Settings
from localcluster import free_port


async def _forever() -> None:
    await asyncio.Event().wait()


async def _broken() -> None:
    raise RuntimeError("a bug")


async def _get(host: str, port: int) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}/healthz") as response,
    ):
        return response.status, await response.text()


async def test_a_stopped_component_fails_the_liveness_probe() -> None:
    app = App(Settings())
    port = free_port()
    runner = await serve_liveness("127.0.0.1", port, app.stopped)
    try:
        app.tasks = [asyncio.create_task(_forever(), name="dualstack Service cache")]
        await asyncio.sleep(0)
        assert await _get("127.0.0.1", port) == (200, "ok")
        app.tasks.append(asyncio.create_task(_broken(), name="dualstack reconciler"))
        await asyncio.gather(app.tasks[1], return_exceptions=True)
        assert await _get("127.0.0.1", port) == (500, "stopped: dualstack reconciler")
    finally:
        app.tasks[0].cancel()
        await asyncio.gather(app.tasks[0], return_exceptions=True)
        await runner.cleanup()


async def test_liveness_answers_on_both_families_without_an_address() -> None:
    port = free_port()
    runner = await serve_liveness("", port, list)
    try:
        assert await _get("127.0.0.1", port) == (200, "ok")
        assert await _get("[::1]", port) == (200, "ok"), "an IPv6-only kubelet's probe"
    finally:
        await runner.cleanup()
