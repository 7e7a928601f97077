"""The node's Kubernetes components: the kubelet's configuration and command line, and
kube-proxy's and the scheduler's (pure). This machine's kernel has cgroup v1, so the
kubelet runs with ``failCgroupV1: false``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localcluster.topology import CLUSTER_DOMAIN, NODE_NAME


def kubelet_config(
    node_dir: Path,
    pki: Path,
    socket: Path,
    port: int,
    healthz_port: int,
    cluster_dns: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine's cgroups are v1
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{socket}",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "failSwapOn": False,
        "podLogsDir": str(node_dir / "pod-logs"),
        "resolvConf": "/etc/resolv.conf",
        # Pods resolve through kube-dns (CoreDNS, localcluster.node.dns).
        "clusterDNS": list(cluster_dns),
        "clusterDomain": CLUSTER_DOMAIN,
        # A test machine's disk may be nearly full: never evict for it.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "enforceNodeAllocatable": [],
    }


def kubelet(
    binaries: Path, config: Path, state_dir: Path, node_dir: Path, addresses: Sequence[str]
) -> list[str]:
    return [
        str(binaries / "kubelet"),
        f"--config={config}",
        f"--kubeconfig={state_dir / 'kubelet.kubeconfig'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={','.join(addresses)}",
        f"--root-dir={node_dir / 'kubelet'}",
        "--v=1",
    ]


def kube_proxy(
    binaries: Path, state_dir: Path, cluster_cidrs: Sequence[str], metrics: int, healthz: int
) -> list[str]:
    return [
        str(binaries / "kube-proxy"),
        f"--kubeconfig={state_dir / 'kube-proxy.kubeconfig'}",
        f"--hostname-override={NODE_NAME}",
        "--proxy-mode=iptables",
        f"--cluster-cidr={','.join(cluster_cidrs)}",
        f"--metrics-bind-address=127.0.0.1:{metrics}",
        f"--healthz-bind-address=127.0.0.1:{healthz}",
        "--conntrack-max-per-core=0",  # leave the host's conntrack table alone
        "--v=1",
    ]


def scheduler(binaries: Path, state_dir: Path, port: int) -> list[str]:
    config = state_dir / "scheduler.kubeconfig"
    return [
        str(binaries / "kube-scheduler"),
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--v=1",
    ]
