"""Detecting what the cluster's service network offers, against the real API server."""

from __future__ import annotations

import asyncio

import pytest

from dualstack_operator.api.models import IPFamily
from dualstack_operator.kube.client import Client
from dualstack_operator.kube.services import ServiceCalls
from dualstack_operator.kube.transport import Transport
from localcluster import LocalCluster

V4, V6 = IPFamily.IPV4, IPFamily.IPV6


async def detect(cluster: LocalCluster) -> tuple[list[IPFamily] | None, list[IPFamily]]:
    transport = Transport(str(cluster.kubeconfig))
    await transport.connect()
    api = ServiceCalls(Client(transport))
    try:
        return await api.service_cidr_families(), await api.probe_families()
    finally:
        await transport.close()


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [("dual_cluster", [V4, V6]), ("single_cluster", [V4]), ("ipv6_cluster", [V6, V4])],
)
def test_servicecidr_and_dry_run_probe_agree(
    request: pytest.FixtureRequest, fixture: str, expected: list[IPFamily]
) -> None:
    cluster: LocalCluster = request.getfixturevalue(fixture)
    from_cidr, from_probe = asyncio.run(detect(cluster))
    assert from_cidr == expected
    assert from_probe == expected, "the fallback for clusters without the ServiceCIDR API"
