"""Who may read /metrics under ``--metrics-secure``: the API server decides.

As controller-runtime's secure metrics do: the scraper's bearer token is checked
with a TokenReview, then its user's right to "get" the non-resource URL /metrics
with a SubjectAccessReview (``kubectl create clusterrole ... --verb=get
--non-resource-url=/metrics``). Answers are cached briefly, so a scrape every few
seconds costs the API server two requests a minute, not two per scrape.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dualstack_operator.core.views import UserInfo

CACHE_SECONDS = 60.0


class Reviewer(Protocol):
    async def review_token(self, token: str) -> UserInfo | None: ...
    async def may_get(self, user: UserInfo, path: str) -> bool: ...


@dataclass(frozen=True)
class Verdict:
    status: int  # 200, 401 or 403
    reason: str


class MetricsAuth:
    def __init__(
        self,
        reviewer: Reviewer,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reviewer = reviewer
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, Verdict]] = {}

    async def check(self, authorization: str | None, path: str) -> Verdict:
        """The verdict for a request's Authorization header on ``path``.

        Failures to reach the API server raise (the caller answers 503) and are not
        cached; a token's verdict is, for ``ttl`` seconds.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Verdict(401, "a bearer token is required")
        key = hashlib.sha256(f"{path}\0{token.strip()}".encode()).hexdigest()
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        verdict = await self._review(token.strip(), path)
        if len(self._cache) > 1000:  # a flood of distinct tokens must not grow memory
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + self.ttl, verdict)
        return verdict

    async def _review(self, token: str, path: str) -> Verdict:
        user = await self.reviewer.review_token(token)
        if user is None:
            return Verdict(401, "the token is not valid")
        if not await self.reviewer.may_get(user, path):
            return Verdict(403, f'{user.username} may not get "{path}"')
        return Verdict(200, user.username)
