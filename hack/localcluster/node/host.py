"""What a node touches on the host outside its directory, and how to find it again:
mounts, the bridge, the kubelet's, kube-proxy's and the CNI plugins' iptables chains,
log links and the CNI library's cached results."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from localcluster.topology import NETWORK

# Paths outside the node's directory the kubelet and the CNI library write to whatever
# they are told; those missing before the node started are removed with it.
HOST_DIRS = ("/var/lib/cni", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods")
CNI_RESULTS = Path("/var/lib/cni/results")
CONTAINER_LOGS = Path("/var/log/containers")
CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
# Chains the kubelet, kube-proxy and the CNI plugins (bridge ipMasq, portmap) add.
CHAIN_PREFIXES = ("KUBE-", "CNI-")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    marker = str(root.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == marker or point.startswith(marker + "/"):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def our_chains() -> dict[tuple[str, str], list[str]]:
    """(command, table) -> the node's chains left in that table. A host without the
    command has none of them (unit tests run on machines without iptables)."""
    found: dict[tuple[str, str], list[str]] = {}
    for command in ("iptables", "ip6tables"):
        if shutil.which(command) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            out = run(command, "-t", table, "-S")
            chains = [
                line.split()[1]
                for line in out.stdout.splitlines()
                if line.startswith("-N ") and line.split()[1].startswith(CHAIN_PREFIXES)
            ]
            if chains:
                found[(command, table)] = chains
    return found


def host_files(root: Path) -> list[Path]:
    """Files the node left outside its directory: the kubelet's log links pointing
    under ``root`` and the CNI library's cached results for the node's network."""
    marker = str(root.resolve())
    found = []
    if CONTAINER_LOGS.is_dir():
        for link in CONTAINER_LOGS.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(marker):
                found.append(link)
    if CNI_RESULTS.is_dir():
        ours = {p.name.split("-")[-2] for p in CNI_RESULTS.glob(f"{NETWORK}-*")}
        for result in CNI_RESULTS.iterdir():
            name = result.name
            if name.startswith(f"{NETWORK}-") or (
                name.startswith("cni-loopback-") and name.split("-")[-2] in ours
            ):
                found.append(result)
    return found
