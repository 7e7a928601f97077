"""MissingEndpoints: which dual-stack Services lack ready endpoints of one family."""

from __future__ import annotations

from typing import Any

import pytest

from dualstack_operator.api.models import DriftReason
from dualstack_operator.core.endpoints import missing_endpoints, ready_by_service
from dualstack_operator.core.views import ServiceView, SliceView


def svc(*families: str) -> ServiceView:
    return ServiceView(
        "ns", "web", "1", {}, False, "ClusterIP", False, "PreferDualStack", tuple(families)
    )


def slice_body(family: str, *ready: bool | None, service: str = "web") -> dict[str, Any]:
    endpoints = []
    for i, r in enumerate(ready):
        conditions = {} if r is None else {"ready": r}
        address = f"10.0.0.{i + 1}" if family == "IPv4" else f"fd00::{i + 1}"
        endpoints.append({"addresses": [address], "conditions": conditions})
    return {
        "metadata": {"labels": {"kubernetes.io/service-name": service}},
        "addressType": family,
        "endpoints": endpoints,
    }


def test_ready_counts_treat_an_unset_condition_as_ready() -> None:
    views = [
        SliceView.from_body(slice_body("IPv4", True, None, False)),
        SliceView.from_body(slice_body("IPv4", True)),
        SliceView.from_body(slice_body("IPv6", False)),
        SliceView.from_body({"addressType": "FQDN", "metadata": {"labels": {}}}),
    ]
    assert views[3] is None
    assert ready_by_service(v for v in views if v) == {"web": {"IPv4": 3, "IPv6": 0}}


@pytest.mark.parametrize(
    ("families", "ready", "missing"),
    [
        (("IPv4", "IPv6"), {"IPv4": 2}, "IPv6"),
        (("IPv4", "IPv6"), {"IPv4": 2, "IPv6": 0}, "IPv6"),
        (("IPv6", "IPv4"), {"IPv6": 1}, "IPv4"),
        (("IPv4", "IPv6"), {"IPv4": 1, "IPv6": 1}, None),
        (("IPv4", "IPv6"), {}, None),  # no endpoints at all: not a dual-stack problem
        (("IPv4",), {"IPv4": 1}, None),  # single-stack: one family to serve
        (("IPv4",), {}, None),
    ],
)
def test_missing_endpoints(
    families: tuple[str, ...], ready: dict[str, int], missing: str | None
) -> None:
    decision = missing_endpoints(svc(*families), ready)
    if missing is None:
        assert decision is None
        return
    assert decision is not None
    assert decision.reason == DriftReason.MISSING_ENDPOINTS
    assert decision.patch is None, "reported, never fixed by dropping the family"
    assert f"no ready {missing} endpoint" in decision.message
    assert "refused" in decision.message
