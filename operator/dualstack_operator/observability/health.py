"""Health endpoints: the liveness probe of a running operator, and both probes while it
cannot start yet (its CRDs not applied): alive, so nothing restarts it in a loop, and
unready, so no traffic and no rollout counts on it.

Without an address every server here listens on every address of both families: a
kubelet probes the pod's primary IP, which is IPv6 on an IPv6-only cluster. (kopf's own
liveness endpoint binds the one host of its URL, so the operator does not use it.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web


async def serve_liveness(
    address: str, port: int, stopped: Callable[[], list[str]]
) -> web.AppRunner:
    """/healthz answers 200 while every component loop runs, and 500 naming those that
    stopped, so the kubelet restarts the pod; the caller cleans up."""

    async def healthz(_: web.Request) -> web.Response:
        names = stopped()
        if names:
            return web.Response(status=500, text=f"stopped: {', '.join(names)}")
        return web.Response(text="ok")

    return await _serve(address, port, "/healthz", healthz)


async def serve_waiting(
    message: str, liveness_port: int, address: str, readiness_port: int
) -> list[web.AppRunner]:
    """/healthz answers 200 and /readyz 503, both with ``message``; the caller cleans up."""

    async def alive(_: web.Request) -> web.Response:
        return web.Response(text=message)

    async def unready(_: web.Request) -> web.Response:
        return web.Response(status=503, text=message)

    return [
        await _serve(address, listen, path, handler)
        for listen, path, handler in (
            (liveness_port, "/healthz", alive),
            (readiness_port, "/readyz", unready),
        )
        if listen
    ]


async def _serve(
    address: str, port: int, path: str, handler: Callable[[web.Request], Awaitable[web.Response]]
) -> web.AppRunner:
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address or None, port).start()
    return runner
