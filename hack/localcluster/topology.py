"""The cluster's shape: its IP families (primary first), the CIDRs each family gets, and
the node's names and host addresses. Both the control plane and the node read it, so
neither imports the other for it."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Family = Literal["ipv4", "ipv6"]

SERVICE_CIDRS: dict[Family, str] = {"ipv4": "10.96.0.0/16", "ipv6": "fd00:10:96::/112"}
CLUSTER_CIDRS: dict[Family, str] = {"ipv4": "10.244.0.0/16", "ipv6": "fd00:10:244::/56"}
NODE_CIDR_MASK: dict[Family, int] = {"ipv4": 24, "ipv6": 64}
API_FAMILY: dict[Family, str] = {"ipv4": "IPv4", "ipv6": "IPv6"}

CLUSTER_DOMAIN = "cluster.local"
NODE_NAME = "node-1"
BRIDGE = "dsbr0"  # the node's CNI bridge (host-wide: one node cluster per machine)
NETWORK = "dualstack-local"  # the CNI network: its cached results are named after it


def parse_families(text: str) -> tuple[Family, ...]:
    """Parses ``ipv4``, ``ipv6``, ``ipv4,ipv6`` or ``ipv6,ipv4`` (first = primary)."""
    parts = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    valid: set[tuple[str, ...]] = {("ipv4",), ("ipv6",), ("ipv4", "ipv6"), ("ipv6", "ipv4")}
    if parts not in valid:
        raise ValueError(f"FAMILIES must be one of ipv4, ipv6, ipv4,ipv6, ipv6,ipv4 (got {text!r})")
    return tuple("ipv4" if p == "ipv4" else "ipv6" for p in parts)


@dataclass(frozen=True)
class Topology:
    families: tuple[Family, ...] = ("ipv4", "ipv6")
    nodes: int = 0  # 0 or 1: a real node (containerd, kubelet, kube-proxy, scheduler)

    @property
    def service_cidrs(self) -> list[str]:
        return [SERVICE_CIDRS[f] for f in self.families]

    @property
    def cluster_cidrs(self) -> list[str]:
        return [CLUSTER_CIDRS[f] for f in self.families]

    @property
    def dns_addresses(self) -> list[str]:
        """The kube-dns Service's ClusterIPs (the 10th address of each range, as
        kubeadm's), which the kubelet gives pods as their nameservers."""
        return [str(ipaddress.ip_network(c)[10]) for c in self.service_cidrs]

    @property
    def api_families(self) -> list[str]:
        """The families as the Service API spells them (IPv4/IPv6), primary first."""
        return [API_FAMILY[f] for f in self.families]


def converted_pod_cidrs(kept: Sequence[str], topology: Topology) -> list[str]:
    """The node's podCIDRs after a conversion to ``topology``: the ranges it has, and
    for each new family the first range of its cluster CIDR (pods keep their addresses)."""
    out = []
    for family in topology.families:
        have = [c for c in kept if (":" in c) == (family == "ipv6")]
        first = next(ipaddress.ip_network(CLUSTER_CIDRS[family]).subnets(
            new_prefix=NODE_CIDR_MASK[family]))  # fmt: skip
        out.append(have[0] if have else str(first))
    return out


def host_addresses(families: Sequence[Family]) -> list[str]:
    """The host's first global address of each family, primary family first (where a
    node's pods reach the API server, and the node's own addresses)."""
    out = []
    for family in families:
        flag = "-4" if family == "ipv4" else "-6"
        doc = json.loads(
            subprocess.run(
                ["ip", "-j", flag, "addr", "show", "scope", "global"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        found = [
            str(a["local"])
            for i in doc
            for a in i.get("addr_info", [])
            if a.get("local") and i.get("ifname") != BRIDGE
        ]
        if not found:
            raise RuntimeError(f"the host has no global {family} address for the node")
        out.append(found[0])
    return out
