"""API failures as a small typed family, made at one boundary (``kube.transport``).

The reconciler and the cache react to what a failure means, not to HTTP codes:
gone, changed meanwhile, refused for good, expired history, or anything else
(a restarting server, a timeout), which is always retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar


@dataclass(eq=False)  # not frozen: raising sets __traceback__ on the instance
class ApiError(Exception):
    """A failed request: the HTTP status (0 if none came back) and the server's message."""

    status: int
    message: str
    retry_after: float | None = None  # the server's Retry-After, in seconds

    @property
    def transient(self) -> bool:
        """Throttled (429), the server failing (5xx) or no answer at all: the same request
        will likely succeed later, so every caller should slow down, not give up."""
        return self.status in (0, 429) or self.status >= 500

    def __str__(self) -> str:
        return f"{self.status}: {self.message}" if self.status else self.message


class NotFound(ApiError):
    """404: the object is gone; its deletion event brings the next pass."""


class Conflict(ApiError):
    """409: the object changed since it was read; its update event brings the next pass."""


class Rejected(ApiError):
    """The server refused the request as such (400; 401, 403, 422 below): retrying as is
    will not help."""


class Invalid(Rejected):
    """422: the object as sent fails the server's validation."""


class Unauthorized(Rejected):
    """401: the server does not accept the credentials (an expired token, a wrong CA)."""


class Forbidden(Rejected):
    """403: the identity lacks a right (RBAC): retrying will not help until it is granted."""


class TooManyRequests(ApiError):
    """429: the server's flow control throttled us; its Retry-After says when to come back."""


class Expired(ApiError):
    """410 Gone: the resourceVersion is older than the server's history; list afresh."""


def classify(status: int, message: str, retry_after: float | None = None) -> ApiError:
    """The typed error for an HTTP status."""
    kind: type[ApiError]
    if status == 404:
        kind = NotFound
    elif status == 409:
        kind = Conflict
    elif status == 410:
        kind = Expired
    elif status == 401:
        kind = Unauthorized
    elif status == 403:
        kind = Forbidden
    elif status == 422:
        kind = Invalid
    elif status == 400:
        kind = Rejected
    elif status == 429:
        kind = TooManyRequests
    else:
        kind = ApiError
    return kind(status, message, retry_after)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the API server sends whole seconds)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: not what the API server sends; use our own backoff


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
            wait = delay if err.retry_after is None else max(delay, err.retry_after)
        await asyncio.sleep(wait)
    return await call()
