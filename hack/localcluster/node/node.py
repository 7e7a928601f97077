"""The node's processes, started in order once the control plane runs: containerd (with
the locally built sandbox, echo and CoreDNS images), the kubelet, the pod network once
the node has its podCIDRs, kube-proxy and the scheduler; ready when the node is and
CoreDNS (kube-dns) answers."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import ociimage
from localcluster.node import cni, containerd, dns, kubelet
from localcluster.node.containerd import ECHO_IMAGE, PAUSE_IMAGE, Ctr
from localcluster.node.host import HOST_DIRS
from localcluster.node.teardown import socket_of
from localcluster.paths import coredns_binary, node_bin_dir
from localcluster.procs import Supervisor
from localcluster.topology import NODE_NAME, Topology, converted_pod_cidrs, host_addresses


class LocalNode:
    """One node under ``<cluster>/node``; its processes are the cluster's supervisor's."""

    def __init__(
        self,
        state_dir: Path,
        binaries: Path,
        kubectl: list[str],
        topology: Topology,
        supervisor: Supervisor,
        free_port: Callable[[], int],
    ) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "node"
        self.bin = binaries
        self.kubectl = kubectl
        self.topology = topology
        self.supervisor = supervisor
        self.free_port = free_port
        self.socket = socket_of(state_dir)
        self.ctr = Ctr(self.socket, binaries)

    def start(self, deadline: float) -> None:
        for sub in ("cni", "kubelet", "logs", "pod-logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        created = [d for d in HOST_DIRS if not Path(d).exists()]
        (self.dir / "host-dirs.json").write_text(json.dumps(created))
        self._start_containerd(deadline)
        self._import(PAUSE_IMAGE, self.bin / "pause", ["/pause"])
        self._import(ECHO_IMAGE, self.bin / "echo", ["/echo"])
        self._import(dns.COREDNS_IMAGE, coredns_binary(), ["/coredns"])
        self._start_network(deadline)
        self.supervisor.start(
            "kube-scheduler",
            kubelet.scheduler(self.bin, self.state_dir, self.free_port()),
            self.ctr.env,
            cwd=self.state_dir,
        )
        self._wait_ready(deadline)
        self._start_dns(deadline)

    def convert(self, topology: Topology, deadline: float) -> None:
        """The node's side of a conversion to ``topology``'s families. A Node's podCIDRs
        are set once, so the Node object is made again with its range and one of the new
        family, before the kubelet registers again (with an address of each family); the
        pod network then spans both, kube-proxy knows both cluster CIDRs, and kube-dns
        gains a ClusterIP of the new family. Running pods keep their addresses; pods
        started afterwards get both."""
        kept = list(((self._node() or {}).get("spec") or {}).get("podCIDRs") or [])  # type: ignore[attr-defined]
        self.topology = topology
        for name in ("kube-proxy", "kubelet"):
            self.supervisor.stop(name)
        cidrs = converted_pod_cidrs(kept, topology)
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE_NAME},
            "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
        }
        for args, body in ((["delete", "node", NODE_NAME, "--wait=true"], None),
                           (["create", "-f", "-"], json.dumps(node))):  # fmt: skip
            subprocess.run(
                [*self.kubectl, *args], input=body, text=True, check=True,
                capture_output=True, timeout=60,
            )  # fmt: skip
        self._start_network(deadline)
        self._wait_ready(deadline)
        self._start_dns(deadline, restart=True)

    def _start_network(self, deadline: float) -> None:
        """The kubelet, then (once the node has its podCIDRs) the pod network and
        kube-proxy."""
        self._start_kubelet()
        cidrs = self._wait_pod_cidrs(deadline)
        (self.dir / "cni" / "10-dualstack.conflist").write_text(
            json.dumps(cni.conflist(cidrs, self.dir / "cni-ipam"))
        )
        self.supervisor.start(
            "kube-proxy",
            kubelet.kube_proxy(
                self.bin,
                self.state_dir,
                self.topology.cluster_cidrs,
                self.free_port(),
                self.free_port(),
            ),
            self.ctr.env,
            cwd=self.state_dir,
        )

    def _start_containerd(self, deadline: float) -> None:
        path = self.dir / "containerd.toml"
        path.write_text(containerd.config(self.dir, self.socket, self.bin))
        self.supervisor.start(
            "containerd",
            [str(self.bin / "containerd"), "--config", str(path)],
            self.ctr.env,
            cwd=self.state_dir,
        )
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("containerd did not open its socket")
            time.sleep(0.05)

    def _import(self, name: str, binary: Path, entrypoint: list[str]) -> None:
        image = ociimage.Image(name, [ociimage.File(binary.name, binary)], entrypoint)
        self.ctr.import_archive(ociimage.write(image, self.dir / f"{binary.name}.tar"))

    def _start_dns(self, deadline: float, *, restart: bool = False) -> None:
        """CoreDNS as kube-dns, Ready before the node is handed over. ``restart``: its pod
        again, so that it has an address of each family (kube-dns's new ClusterIP has
        endpoints only then)."""
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": dns.objects(self.topology)})
        subprocess.run(
            [*self.kubectl, "apply", "-f", "-"], input=body, text=True, check=True,
            capture_output=True, timeout=60,
        )  # fmt: skip
        if restart:
            subprocess.run(
                [*self.kubectl, "rollout", "restart", "-n", dns.NAMESPACE, "deployment/coredns"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        left = max(1, int(deadline - time.monotonic()))
        out = subprocess.run(
            [*self.kubectl, "rollout", "status", "-n", dns.NAMESPACE, "deployment/coredns",
             f"--timeout={left}s"],
            capture_output=True, text=True, check=False, timeout=left + 10,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"CoreDNS did not become Ready: {out.stderr.strip()}")

    def _start_kubelet(self) -> None:
        pki = self.state_dir / "pki"
        config = kubelet.kubelet_config(
            self.dir, pki, self.socket, self.free_port(), self.free_port(),
            self.topology.dns_addresses,
        )  # fmt: skip
        path = self.dir / "kubelet.json"
        path.write_text(json.dumps(config))
        addresses = host_addresses(self.topology.families)
        argv = kubelet.kubelet(self.bin, path, self.state_dir, self.dir, addresses)
        self.supervisor.start("kubelet", argv, self.ctr.env, cwd=self.state_dir)

    def _node(self) -> dict[str, object] | None:
        out = subprocess.run(
            [*self.kubectl, "get", "node", NODE_NAME, "-o", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        return json.loads(out.stdout) if out.returncode == 0 else None

    def _wait_pod_cidrs(self, deadline: float) -> list[str]:
        while time.monotonic() < deadline:
            node = self._node()
            cidrs = ((node or {}).get("spec") or {}).get("podCIDRs")  # type: ignore[attr-defined]
            if cidrs and len(cidrs) == len(self.topology.families):
                return list(cidrs)
            time.sleep(0.2)
        raise RuntimeError("the node got no podCIDRs (is the controller-manager allocating?)")

    def _wait_ready(self, deadline: float) -> None:
        last = "not registered"
        while time.monotonic() < deadline:
            node = self._node() or {}
            for cond in (node.get("status") or {}).get("conditions") or []:  # type: ignore[attr-defined]
                if cond["type"] == "Ready":
                    if cond["status"] == "True":
                        return
                    last = cond.get("message", "")
            time.sleep(0.2)
        raise RuntimeError(f"{NODE_NAME} not Ready: {last}")


def attached_ctr(state_dir: Path) -> Ctr:
    """``ctr`` against the containerd of the node running under ``state_dir``."""
    return Ctr(socket_of(state_dir), node_bin_dir(build=False))


def pod_log(state_dir: Path, namespace: str, pod: str, container: str) -> str:
    """A container's output, read from the kubelet's pod log directory (the API
    server's route to the kubelet is not set up here). CRI log lines are
    "<time> <stream> <tag> <text>"."""
    logs = state_dir / "node" / "pod-logs"
    lines = []
    for path in sorted(logs.glob(f"{namespace}_{pod}_*/{container}/*.log")):
        for line in path.read_text().splitlines():
            parts = line.split(" ", 3)
            lines.append(parts[3] if len(parts) == 4 else "")
    return "\n".join(lines)


def kill_container(state_dir: Path, container_id: str) -> None:
    """SIGKILL to a container's process, as an OOM kill or a crash would end it."""
    attached_ctr(state_dir)(
        "tasks", "kill", "-s", "SIGKILL", container_id.removeprefix("containerd://")
    )


def import_image(state_dir: Path, archive: Path) -> None:
    """Loads an OCI archive into the node's containerd (namespace k8s.io)."""
    attached_ctr(state_dir).import_archive(archive)
