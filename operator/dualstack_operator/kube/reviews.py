"""Reviews the API server answers: may the operator do this (SelfSubjectAccessReview),
whose is this token (TokenReview), may that user get this URL (SubjectAccessReview)."""

from __future__ import annotations

from typing import Any

from dualstack_operator.core.views import UserInfo
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.resources import (
    SELF_SUBJECT_ACCESS_REVIEWS,
    SUBJECT_ACCESS_REVIEWS,
    TOKEN_REVIEWS,
    Resource,
)


class Reviews:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def _review(self, resource: Resource, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": resource.group_version, "kind": resource.kind, "spec": spec}
        answer = await self.client.create(resource, body)
        return dict(answer.get("status") or {})

    async def allowed(self, verb: str, group: str, resource: str, namespace: str | None) -> bool:
        """May the operator's identity do this?"""
        sub = ""
        if "/" in resource:
            resource, sub = resource.split("/", 1)
        attrs = {"verb": verb, "group": group, "resource": resource, "subresource": sub}
        if namespace:
            attrs["namespace"] = namespace
        status = await self._review(SELF_SUBJECT_ACCESS_REVIEWS, {"resourceAttributes": attrs})
        return bool(status.get("allowed"))

    async def review_token(self, token: str) -> UserInfo | None:
        """The user a bearer token belongs to (None: not valid)."""
        status = await self._review(TOKEN_REVIEWS, {"token": token})
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        return UserInfo(
            username=str(user.get("username", "")),
            uid=str(user.get("uid", "")),
            groups=tuple(user.get("groups") or ()),
            extra=dict(user.get("extra") or {}),
        )

    async def may_get(self, user: UserInfo, path: str) -> bool:
        """May ``user`` get the non-resource URL ``path``?"""
        spec = {
            "user": user.username,
            "uid": user.uid,
            "groups": list(user.groups),
            "extra": user.extra,
            "nonResourceAttributes": {"path": path, "verb": "get"},
        }
        status = await self._review(SUBJECT_ACCESS_REVIEWS, spec)
        return bool(status.get("allowed"))
