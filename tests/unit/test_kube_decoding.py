"""What the client makes of the API server's bytes: watch lines (an ERROR line is the
typed error it names), response bodies, and kopf's peering records."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from dualstack_operator.core.errors import (
    ApiError,
    Expired,
    Forbidden,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthorized,
    classify,
)
from dualstack_operator.kube.client import watch_event
from dualstack_operator.kube.peering import peer_records
from dualstack_operator.kube.resources import SERVICES
from dualstack_operator.kube.transport import decode, message_of


def service(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": version},
        "spec": {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]},
    }


def test_an_added_line_is_a_view_with_its_version() -> None:
    event = watch_event(SERVICES, {"type": "ADDED", "object": service("41")})
    assert (event.type, event.resource_version) == ("ADDED", "41")
    assert event.item is not None
    assert (event.item.namespace, event.item.name) == ("shop", "web")


def test_a_bookmark_carries_only_its_version() -> None:
    line = {"type": "BOOKMARK", "object": {"kind": "Service", "metadata": {"resourceVersion": "9"}}}
    event = watch_event(SERVICES, line)
    assert (event.type, event.resource_version, event.item) == ("BOOKMARK", "9", None)


def test_an_error_line_of_410_is_expired_history() -> None:
    line = {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": "too old resource version: 12 (3456)",
            "reason": "Expired",
            "code": 410,
        },
    }
    with pytest.raises(Expired, match="too old resource version"):
        watch_event(SERVICES, line)


def test_an_error_line_without_a_code_is_a_plain_failure() -> None:
    with pytest.raises(ApiError) as caught:
        watch_event(SERVICES, {"type": "ERROR", "object": {"message": "internal error"}})
    assert type(caught.value) is ApiError
    assert caught.value.transient, "retried, as any failure without a meaning"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (410, Expired),
        (422, Invalid),
        (429, TooManyRequests),
    ],
)
def test_statuses_map_to_their_meaning(status: int, kind: type[ApiError]) -> None:
    assert type(classify(status, "m")) is kind


def test_a_body_that_is_not_json_is_a_failed_request() -> None:
    with pytest.raises(ApiError, match="not JSON"):
        decode(b'{"kind": "Servi')
    with pytest.raises(ApiError, match="not a JSON object"):
        decode(b"[1]")
    assert decode(b'{"kind": "Status"}') == {"kind": "Status"}


def test_the_message_of_a_status_else_the_default() -> None:
    assert (
        message_of(b'{"message": "services \\"x\\" not found"}', "404") == 'services "x" not found'
    )
    assert message_of(b"<html>bad gateway</html>", "502 Bad Gateway") == "502 Bad Gateway"
    assert message_of(None, "none") == "none"


def test_peer_records_as_kopf_writes_them() -> None:
    doc = {
        "status": {
            "host-a": {"priority": 10, "lifetime": 60, "lastseen": "2026-11-01T10:00:00.5+00:00"},
            "host-b": {"priority": "20", "lifetime": 30, "lastseen": "2026-11-01T10:00:01"},
        }
    }
    a, b = peer_records(doc)
    assert (a.identity, a.priority, a.lifetime) == ("host-a", 10, 60.0)
    assert a.lastseen == datetime.datetime(2026, 11, 1, 10, 0, 0, 500000, tzinfo=datetime.UTC)
    assert (b.priority, b.lastseen.tzinfo) == (20, datetime.UTC), "a naive time is UTC"


@pytest.mark.parametrize(
    "entry",
    [
        "not an object",
        {"priority": 1, "lastseen": "yesterday"},
        {"priority": "high", "lastseen": "2026-11-01T10:00:00"},
        {"priority": 1},
    ],
)
def test_malformed_peer_entries_are_left_out(entry: Any) -> None:
    doc = {"status": {"bad": entry, "good": {"priority": 1, "lastseen": "2026-11-01T10:00:00"}}}
    assert [p.identity for p in peer_records(doc)] == ["good"]


def test_no_peering_object_no_peers() -> None:
    assert peer_records(None) == []
    assert peer_records({"metadata": {"name": "x"}}) == []
