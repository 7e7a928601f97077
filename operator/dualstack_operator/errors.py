"""API failures as a small typed family, made at one boundary (``kubeapi``).

The reconciler and the cache react to what a failure means, not to HTTP codes:
gone, changed meanwhile, refused for good, expired history, or anything else
(a restarting server, a timeout), which is always retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar


@dataclass(frozen=True)
class ApiError(Exception):
    """A failed request: the HTTP status (0 if none came back) and the server's message."""

    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.status}: {self.message}" if self.status else self.message


class NotFound(ApiError):
    """404: the object is gone; its deletion event brings the next pass."""


class Conflict(ApiError):
    """409: the object changed since it was read; its update event brings the next pass."""


class Rejected(ApiError):
    """The server refused the request as such (400, 403, 422): retrying as is will not help."""


class Expired(ApiError):
    """410 Gone: the resourceVersion is older than the server's history; list afresh."""


def classify(status: int, message: str) -> ApiError:
    """The typed error for an HTTP status."""
    kind: type[ApiError]
    if status == 404:
        kind = NotFound
    elif status == 409:
        kind = Conflict
    elif status == 410:
        kind = Expired
    elif status in (400, 403, 422):
        kind = Rejected
    else:
        kind = ApiError
    return kind(status, message)


T = TypeVar("T")


async def waiting_out_429(
    call: Callable[[], Awaitable[T]], attempts: int = 10, delay: float = 1.0
) -> T:
    """``call()``, again after ``delay`` while the server answers 429 (throttled, or a new
    CRD's storage still initializing); other errors, and the last 429, are raised."""
    for _ in range(attempts - 1):
        try:
            return await call()
        except ApiError as err:
            if err.status != 429:
                raise
        await asyncio.sleep(delay)
    return await call()
