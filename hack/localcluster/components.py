"""The control plane's command lines, as pure functions of the cluster's shape and its
paths and ports (unit-tested; ``cluster`` runs them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from localcluster.audit import AUDIT_LOG
from localcluster.topology import NODE_CIDR_MASK, Topology


def etcd(binaries: Path, data_dir: Path, url: str, peer_port: int) -> list[str]:
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(binaries / "etcd"),
        "--name=local",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=local={peer}",
        "--listen-metrics-urls=",
        "--unsafe-no-fsync",  # throwaway state: speed over durability
        "--log-level=warn",
    ]


def listen(advertise: str | None) -> list[str]:
    """Loopback only, unless a node's pods must reach the API server: then on every
    address, ``advertise`` (the host's) published as the `kubernetes` Service's endpoint."""
    if advertise is None:
        return [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
        ]
    return [
        "--bind-address=0.0.0.0",
        f"--advertise-address={advertise}",
        "--endpoint-reconciler-type=lease",
    ]


def apiserver(
    binaries: Path,
    state_dir: Path,
    etcd_url: str,
    port: int,
    topology: Topology,
    advertise: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    pki = state_dir / "pki"
    return [
        str(binaries / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        *listen(advertise),
        f"--secure-port={port}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={','.join(topology.service_cidrs)}",
        "--allow-privileged=true",
        "--profiling=false",
        f"--audit-policy-file={state_dir / 'audit-policy.json'}",
        f"--audit-log-path={state_dir / AUDIT_LOG}",
        "--audit-log-mode=blocking",
        "--v=1",
        *extra,
    ]


def controller_manager(binaries: Path, state_dir: Path, port: int, topology: Topology) -> list[str]:
    pki = state_dir / "pki"
    return [
        str(binaries / "kube-controller-manager"),
        f"--kubeconfig={state_dir / 'controller-manager.kubeconfig'}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={pki / 'kcm'}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-cluster-ip-range={','.join(topology.service_cidrs)}",
        "--allocate-node-cidrs=true",
        f"--cluster-cidr={','.join(topology.cluster_cidrs)}",
        # A mask flag for a family the cluster lacks is a fatal error.
        *(f"--node-cidr-mask-size-{f}={NODE_CIDR_MASK[f]}" for f in topology.families),
        "--controllers=*",
        "--v=1",
    ]
