"""The liveness probe reports a component loop that stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import kopf
import pytest

from dualstack_operator.runtime.handlers import App
from dualstack_operator.runtime.handlers import components as registered
from dualstack_operator.runtime.settings import Settings

# kopf types the registered probe as its handler protocol; it is a plain function.
components = cast(Callable[..., str], registered)


async def test_a_stopped_component_fails_the_liveness_probe() -> None:
    app = App(Settings())

    async def forever() -> None:
        await asyncio.Event().wait()

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.tasks = [asyncio.create_task(forever(), name="dualstack Service cache")]
    await asyncio.sleep(0)
    assert components(memo=kopf.Memo(app=app)) == "running"
    app.tasks.append(asyncio.create_task(broken(), name="dualstack reconciler"))
    await asyncio.gather(app.tasks[1], return_exceptions=True)
    with pytest.raises(kopf.PermanentError, match="stopped: dualstack reconciler"):
        components(memo=kopf.Memo(app=app))
    app.tasks[0].cancel()
    await asyncio.gather(app.tasks[0], return_exceptions=True)
