"""Detecting what the cluster's service network offers, against the real API server."""

from __future__ import annotations

import asyncio

import pytest

from dualstack_operator.api.models import IPFamily
from dualstack_operator.kube.client import KubeAPI
from localcluster import LocalCluster

pytestmark = pytest.mark.cluster

V4, V6 = IPFamily.IPV4, IPFamily.IPV6


async def detect(cluster: LocalCluster) -> tuple[list[IPFamily] | None, list[IPFamily]]:
    api = KubeAPI(str(cluster.kubeconfig))
    await api.connect()
    try:
        return await api.service_cidr_families(), await api.probe_families()
    finally:
        await api.close()


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
