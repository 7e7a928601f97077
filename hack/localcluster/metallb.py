"""MetalLB's controller run out of cluster against the local API server, so that
LoadBalancer Services get ``status.loadBalancer.ingress`` as on a cloud: it allocates
addresses from IPAddressPools and writes them into the Service's status. Only the
controller runs, no speaker: nothing is announced, the addresses reach nothing.

It runs with the cluster's admin kubeconfig, so MetalLB's RBAC is not applied. It
needs its CRDs and its namespace (where it reads the pools), nothing else: webhooks
are off (there is no webhook Service to reach, no certificate to rotate), and the
memberlist secret is the speakers'. Its metrics endpoint tells when it has read its
pools; MetalLB's own readiness (a Pod, a Deployment) has no meaning out of cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcluster.paths import METALLB_BUILD, metallb_binary
from localcluster.procs import Process, Supervisor, free_port

if TYPE_CHECKING:
    from localcluster.cluster import LocalCluster

__all__ = [
    "NAMESPACE",
    "MetalLB",
    "MetalLBError",
    "controller_argv",
    "crd_paths",
    "ip_address_pool",
    "metallb_binary",
    "module_dir",
]

MODULE = "go.universe.tf/metallb"
NAMESPACE = "metallb-system"
NAME = "metallb-controller"  # the supervised process and its log
API_VERSION = "metallb.io/v1beta1"
START_TIMEOUT_S = 60.0
_LOADED = "metallb_k8s_client_config_loaded_bool 1"  # the pools were read once
_STALE = "metallb_k8s_client_config_stale_bool 1"  # the latest pools were rejected


class MetalLBError(RuntimeError):
    """The controller exited, or did not take its configuration in time."""


def module_version() -> str:
    """The MetalLB version that ``hack/metallb/go.mod`` pins (the one built)."""
    for line in (METALLB_BUILD.parent / "go.mod").read_text().splitlines():
        words = line.split()
        if MODULE in words[:2] and len(words) > words.index(MODULE) + 1:
            return words[words.index(MODULE) + 1]
    raise MetalLBError(f"{MODULE} is not required in hack/metallb/go.mod")


def module_dir() -> Path:
    """MetalLB's module source in Go's module cache, downloaded if it is not there."""
    here = METALLB_BUILD.parent
    env = {**os.environ, "GOTOOLCHAIN": "local"}
    go = ["go", "env", "GOMODCACHE"]
    cache = subprocess.run(go, cwd=here, env=env, check=True, capture_output=True, text=True)
    path = Path(cache.stdout.strip()) / f"{MODULE}@{module_version()}"
    if not path.is_dir():
        download = ["go", "mod", "download", MODULE]
        subprocess.run(download, cwd=here, env=env, check=True, capture_output=True)
    return path


def crd_paths() -> list[Path]:
    """MetalLB's CRDs as its kustomization lists them (``config/crd/bases``): not the
    Helm chart's copy, whose BGPPeer converts through a webhook that is not running here."""
    paths = sorted((module_dir() / "config" / "crd" / "bases").glob("*.yaml"))
    if not paths:
        raise MetalLBError(f"no CRDs under {module_dir()}/config/crd/bases")
    return paths


def ip_address_pool(
    name: str, addresses: Sequence[str], *, namespace: str = NAMESPACE, auto_assign: bool = True
) -> dict[str, Any]:
    """An IPAddressPool of ``addresses``: CIDRs or ``first-last`` ranges, of either family.
    A Service gets the addresses of its families from one pool: a dual-stack Service
    needs a pool with both (or, PreferDualStack, settles for the one it finds)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"addresses": list(addresses), "autoAssign": auto_assign},
    }


def controller_argv(
    binary: Path, kubeconfig: Path, metrics_port: int, *, namespace: str = NAMESPACE,
    lb_class: str = "",
) -> list[str]:  # fmt: skip
    """The controller's command line. ``--kubeconfig`` (controller-runtime's flag) also
    names the state directory, which is how a stop by PID knows the process is ours."""
    argv = [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--namespace={namespace}",  # where it reads pools (and would keep its secrets)
        "--webhook-mode=disabled",  # also skips the webhook certificates' rotation
        f"--port={metrics_port}",  # plain HTTP on every address; 7472 by default
        "--log-level=info",
    ]
    if lb_class:  # only Services of this spec.loadBalancerClass; else those without one
        argv.append(f"--lb-class={lb_class}")
    return argv


class MetalLB:
    """MetalLB's controller for one cluster, a child of the cluster's supervisor: the
    cluster's stop (``make cluster-down``) ends it by PID with the rest."""

    def __init__(
        self,
        supervisor: Supervisor,
        kubectl: Path,
        kubeconfig: Path,
        state_dir: Path,
        *,
        namespace: str = NAMESPACE,
        lb_class: str = "",
    ) -> None:
        self.supervisor = supervisor
        self.kubectl = [str(kubectl), f"--kubeconfig={kubeconfig}"]
        self.kubeconfig = kubeconfig
        self.state_dir = state_dir
        self.namespace = namespace
        self.lb_class = lb_class
        self.metrics_port = 0
        self.process: Process | None = None

    @classmethod
    def of(
        cls, cluster: LocalCluster, *, namespace: str = NAMESPACE, lb_class: str = ""
    ) -> MetalLB:
        """For a started ``LocalCluster``: its supervisor, kubectl and kubeconfig."""
        return cls(
            cluster.supervisor,
            cluster.binaries / "kubectl",
            cluster.kubeconfig,
            cluster.state_dir,
            namespace=namespace,
            lb_class=lb_class,
        )

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Installs the CRDs and the namespace, starts the controller and returns once
        it has read its pools (none is fine: Services then wait for one)."""
        deadline = time.monotonic() + timeout
        binary = metallb_binary()
        crds = [f"--filename={p}" for p in crd_paths()]
        # Server-side: the BGPPeer CRD is too big for the last-applied annotation.
        self.run("apply", "--server-side", "--force-conflicts", *crds)
        self.run("wait", "--for=condition=Established", f"--timeout={self._left(deadline)}s", *crds)
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        self.apply([namespace])
        for attempt in range(1, 4):
            self.metrics_port = free_port()
            argv = controller_argv(
                binary, self.kubeconfig, self.metrics_port,
                namespace=self.namespace, lb_class=self.lb_class,
            )  # fmt: skip
            self.process = self.supervisor.start(NAME, argv, cwd=self.state_dir)
            try:
                self._wait_ready(self.process, deadline)
                return
            except MetalLBError as err:
                # The chosen metrics port was taken before the controller bound it.
                if attempt == 3 or "address already in use" not in str(err):
                    self.stop()
                    raise
                self.stop()

    def stop(self) -> None:
        self.supervisor.stop(NAME)
        self.process = None

    def run(self, *args: str, body: str | None = None) -> str:
        """kubectl against the cluster; its stdout."""
        out = subprocess.run(
            [*self.kubectl, *args], input=body, capture_output=True, text=True,
            check=False, timeout=120,
        )  # fmt: skip
        if out.returncode != 0:
            raise MetalLBError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        """``kubectl apply`` of plain objects (``ip_address_pool(...)``, Services...)."""
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        self.run("apply", "-f", "-", body=body)

    def apply_pool(self, name: str, addresses: Sequence[str], *, auto_assign: bool = True) -> None:
        """Creates or replaces the IPAddressPool ``name`` in the controller's namespace."""
        pool = ip_address_pool(name, addresses, namespace=self.namespace, auto_assign=auto_assign)
        self.apply([pool])

    def ingress(self, namespace: str, service: str) -> list[str]:
        """The addresses in a Service's ``status.loadBalancer.ingress``, in order."""
        svc = json.loads(self.run("get", "service", "-n", namespace, service, "-o", "json"))
        entries = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return [str(e["ip"]) for e in entries if e.get("ip")]

    def metrics(self) -> str:
        """The controller's Prometheus metrics ("" while it does not answer)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return str(resp.read().decode())
        except (urllib.error.URLError, OSError):
            return ""

    def _wait_ready(self, process: Process, deadline: float) -> None:
        """Until its metrics say the pools were loaded; early out when it exits, cannot
        bind its port (it only logs that) or rejects the pools."""
        while time.monotonic() < deadline:
            tail = process.log_tail()
            if not process.alive():
                raise MetalLBError(f"{NAME} exited with code {process.returncode}:\n{tail}")
            if "cannot listen and serve" in tail:
                raise MetalLBError(f"{NAME} serves no metrics:\n{tail}")
            metrics = self.metrics().splitlines()
            if _STALE in metrics:
                raise MetalLBError(f"{NAME} rejects its IPAddressPools:\n{tail}")
            if _LOADED in metrics:
                return
            time.sleep(0.2)
        raise MetalLBError(f"{NAME} has not loaded its configuration:\n{process.log_tail()}")

    @staticmethod
    def _left(deadline: float) -> int:
        return max(1, int(deadline - time.monotonic()))
