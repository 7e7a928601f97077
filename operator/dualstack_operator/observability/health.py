"""Health endpoints while the operator cannot start yet (its CRDs not applied): alive, so
nothing restarts it in a loop, and unready, so no traffic and no rollout counts on it."""

from __future__ import annotations

from aiohttp import web


async def serve_waiting(
    message: str, liveness_port: int, address: str, readiness_port: int
) -> list[web.AppRunner]:
    """/healthz answers 200 and /readyz 503, both with ``message``; the caller cleans up."""

    async def alive(_: web.Request) -> web.Response:
        return web.Response(text=message)

    async def unready(_: web.Request) -> web.Response:
        return web.Response(status=503, text=message)

    runners = []
    for listen, path, handler in (
        (liveness_port, "/healthz", alive),
        (readiness_port, "/readyz", unready),
    ):
        if not listen:
            continue
        app = web.Application()
        app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address or None, listen).start()
        runners.append(runner)
    return runners
