"""What the benchmarks share: a local control plane with the CRD, a client, the
operator as a process, and where the numbers go."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from dualstack_operator.api.names import GROUP, VERSION
from localcluster import REPO, LocalCluster, Process, Supervisor


async def cluster_with_crd(
    name: str, audit_users: Sequence[str] = ()
) -> tuple[LocalCluster, client.ApiClient]:
    """A fresh dual-stack control plane with the CRD established, and an admin client."""
    cluster = LocalCluster(REPO / ".local" / name, ("ipv4", "ipv6"), audit_users=audit_users)
    cluster.start(die_with_parent=True)
    kubectl, kc = str(cluster.binaries / "kubectl"), f"--kubeconfig={cluster.kubeconfig}"
    crd = str(REPO / "crds")
    for argv in (["apply", "-k", crd], ["wait", "--for=condition=Established", "crd", "--all"]):
        await asyncio.to_thread(
            subprocess.run, [kubectl, kc, *argv], check=True, capture_output=True
        )
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 64
    return cluster, client.ApiClient(cfg)


def policy(ns: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DualStackPolicy",
        "metadata": {"name": "default", "namespace": ns},
        "spec": spec,
    }


async def start_operator(
    cluster: LocalCluster, *args: str, log_name: str = "operator.log"
) -> Process:
    """`dualstack-operator run ARGS` under its own identity, logging to the state dir."""
    supervisor = Supervisor(cluster.state_dir, record=False)
    return supervisor.start(
        "operator",
        [sys.executable, "-m", "dualstack_operator", "run", *args],
        {**os.environ, "KUBECONFIG": str(cluster.operator_kubeconfig)},
        log=cluster.state_dir / log_name,
    )


async def stop_operator(operator: Process | None) -> None:
    if operator is not None and operator.alive():
        await asyncio.to_thread(operator.stop, signal.SIGTERM, 30.0)


def report(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
