"""etcd, kube-apiserver and kube-controller-manager (and, with ``nodes=1``, a node)
under one state directory, started fresh and stopped by PID."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localcluster import components, pki
from localcluster.audit import AUDIT_LOG, AuditLog
from localcluster.audit import policy as audit_policy
from localcluster.node import LocalNode, remove_containers, teardown_host
from localcluster.paths import bin_dir, node_bin_dir
from localcluster.procs import (
    PIDS_FILE,
    Supervisor,
    free_port,
    recorded,
    stop_recorded_pids,
    wait_port_free,
)
from localcluster.topology import Family, Topology, host_addresses

START_TIMEOUT_S = 120.0
CONTROL = ("kube-controller-manager", "kube-apiserver")


class ClusterError(RuntimeError):
    """The control plane could not be started or reached."""


class PortTakenError(ClusterError):
    """A chosen port was taken before the component could bind it."""


def stop_recorded(state_dir: Path) -> list[str]:
    """Stops the processes recorded in ``state_dir`` by PID; returns what it stopped.

    With a node, the kubelet goes first (it would restart what is removed), then every
    container while containerd still runs; then the rest in reverse start order, and
    what the node left on the host.
    """
    if not (state_dir / PIDS_FILE).exists():
        return []
    node = any(e["name"] == "containerd" for e in recorded(state_dir))
    stopped: list[str] = []
    if node:
        stopped += stop_recorded_pids(state_dir, ["kubelet"])
        remove_containers(state_dir, node_bin_dir(build=False))
    stopped += [s for s in stop_recorded_pids(state_dir) if s not in stopped]
    (state_dir / PIDS_FILE).unlink(missing_ok=True)
    if node or (state_dir / "node").exists():
        stopped += [f"left by the node, removed: {what}" for what in teardown_host(state_dir)]
    return stopped


class LocalCluster:
    """A control plane for tests, benches and ``make cluster``."""

    def __init__(
        self,
        state_dir: Path,
        families: Sequence[Family] = ("ipv4", "ipv6"),
        binaries: Path | None = None,
        *,
        audit_reads: bool = False,
        audit_users: Sequence[str] = (),
        apiserver_args: Sequence[str] = (),
        nodes: int = 0,
    ) -> None:
        self.state_dir = state_dir.resolve()
        if nodes not in (0, 1):
            raise ClusterError("NODES may be 0 or 1")
        self.topology = Topology(tuple(families), nodes)
        self.apiserver_args = tuple(apiserver_args)
        # Also log the operator's reads and watches (fault tests count every request).
        self.audit_reads = audit_reads
        self.audit_users = tuple(audit_users)  # whose writes are logged beside the operator's
        self._binaries = binaries
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.operator_kubeconfig = self.state_dir / "operator.kubeconfig"
        self.audit = AuditLog(self.state_dir / AUDIT_LOG)
        self.api_port = 0
        self.server = ""
        self.start_seconds = 0.0
        self._etcd_url = ""
        self._etcd_argv: list[str] = []
        self.supervisor = Supervisor(self.state_dir, die_with_parent=False)
        self.node: LocalNode | None = None  # with nodes=1, once started
        self.apiserver_ready_at = 0.0  # time.monotonic() when the API server last became ready

    @property
    def families(self) -> tuple[Family, ...]:
        return self.topology.families

    @property
    def nodes(self) -> int:
        return self.topology.nodes

    @property
    def service_cidrs(self) -> list[str]:
        return self.topology.service_cidrs

    @property
    def api_families(self) -> list[str]:
        """The families as the Service API spells them (IPv4/IPv6), primary first."""
        return self.topology.api_families

    @property
    def binaries(self) -> Path:
        if self._binaries is None:
            self._binaries = bin_dir(build=True)
        return self._binaries

    def start(self, *, die_with_parent: bool = False, timeout: float = START_TIMEOUT_S) -> None:
        """Starts a fresh control plane; returns once the apiserver is ready.

        With ``die_with_parent`` the processes get SIGKILL if the caller dies without
        tearing down (a killed pytest), so no test run leaves processes behind.
        A port taken between choosing it and binding it (an ephemeral client port,
        say) is retried with fresh ports.
        """
        self.supervisor.die_with_parent = die_with_parent
        for attempt in range(1, 4):
            try:
                self._start_once(timeout)
                return
            except PortTakenError:
                if attempt == 3:
                    raise

    def reconfigure(self, families: Sequence[Family], timeout: float = START_TIMEOUT_S) -> None:
        """Restarts apiserver and controller-manager with other families, keeping etcd.

        This is how a live cluster is migrated (single-stack to dual-stack, say):
        the stored objects stay as they were.
        """
        deadline = time.monotonic() + timeout
        for name in CONTROL:
            self.supervisor.stop(name)
        self.topology = Topology(tuple(families), self.topology.nodes)
        try:
            while True:
                # The stopped server's port can stay taken a moment (a socket of the
                # killed process the kernel has not let go): the restart keeps its port.
                wait_port_free(self.api_port, deadline)
                try:
                    self._start_control(deadline)
                    return
                except PortTakenError:
                    for name in CONTROL:
                        self.supervisor.stop(name)
                    if time.monotonic() > deadline:
                        raise
        except BaseException:
            self.stop()
            raise

    def convert(self, families: Sequence[Family], timeout: float = START_TIMEOUT_S) -> None:
        """Converts the running cluster to ``families`` as the Kubernetes docs describe
        for v1.33 and later: the default ServiceCIDR gains the new range through the API
        first, then kube-apiserver and kube-controller-manager restart with flags that
        match, on the same etcd. Until the restart the API server refuses the new family
        ("not configured on this cluster") although the ServiceCIDR lists it. Only a
        secondary family can be added: the primary stays. A node is then converted too
        (``LocalNode.convert``): re-registered for a podCIDR of each family."""
        target = Topology(tuple(families), self.nodes)
        if target.families[0] != self.families[0]:
            raise ValueError(f"the primary family stays {self.families[0]}")
        patch = json.dumps({"spec": {"cidrs": target.service_cidrs}})
        subprocess.run(
            [str(self.binaries / "kubectl"), f"--kubeconfig={self.kubeconfig}", "patch",
             "servicecidrs.networking.k8s.io", "kubernetes", "--type=merge", "-p", patch],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        self.reconfigure(families, timeout)
        if self.node is not None:
            self.node.convert(self.topology, max(deadline, time.monotonic() + timeout / 2))

    def restart_apiserver(self, timeout: float = START_TIMEOUT_S, *, crash: bool = False) -> None:
        """Stops and starts kube-apiserver (and its controller-manager) on the same etcd
        and port: every watch open against it is dropped. With ``crash`` it is killed
        (SIGKILL), not shut down: clients get refused connections at once."""
        if crash:
            self.supervisor.get("kube-apiserver").send(signal.SIGKILL)
        self.reconfigure(self.families, timeout)

    def stop_etcd(self) -> None:
        """Stops etcd (the API server keeps running, and fails its requests)."""
        self.supervisor.stop("etcd")

    def start_etcd(self, timeout: float = START_TIMEOUT_S) -> None:
        """Starts etcd again on its data and port; returns once it is healthy."""
        self.supervisor.start("etcd", self._etcd_argv, cwd=self.state_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = f"{self._etcd_url}/health"
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=2) as resp,  # noqa: S310
            ):
                if json.load(resp).get("health") == "true":
                    return
            time.sleep(0.1)
        raise ClusterError(f"etcd not healthy again:\n{self.log_tail('etcd')}")

    def signal_apiserver(self, signum: int) -> None:
        """SIGSTOP / SIGCONT: the API server stops answering (a partition) and resumes;
        its connections stay open meanwhile, as behind a stalled network."""
        os.kill(self.supervisor.get("kube-apiserver").pid, signum)

    def pid(self, name: str) -> int:
        """The PID of a running component (the benches read its CPU and memory)."""
        return self.supervisor.get(name).pid

    def compact_etcd(self) -> int:
        """Compacts etcd's history up to its current revision; returns that revision.

        A watch resumed from an older resourceVersion then gets 410 Gone.
        """

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            req = urllib.request.Request(  # noqa: S310 - our own etcd on loopback
                f"{self._etcd_url}{path}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                doc: dict[str, Any] = json.load(resp)
                return doc

        key = base64.b64encode(b"/registry").decode()
        revision = int(post("/v3/kv/range", {"key": key, "limit": 1})["header"]["revision"])
        post("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def stop(self) -> list[str]:
        """Stops every process this cluster started, by PID."""
        stopped = stop_recorded(self.state_dir)
        self.supervisor.forget()
        return stopped

    def audit_events(self) -> list[dict[str, Any]]:
        """Completed operator requests the audit policy logs, oldest first."""
        return self.audit.events()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.state_dir / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _start_once(self, timeout: float) -> None:
        begin = time.monotonic()
        stop_recorded(self.state_dir)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        for sub in ("pki", "logs", "etcd"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.state_dir.joinpath("etcd").chmod(0o700)

        etcd_port, peer_port = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        host = host_addresses(self.families) if self.nodes else []
        ca = pki.write_control_plane(self.state_dir, self.server, self.service_cidrs, host)
        if self.nodes:
            pki.write_node(self.state_dir, self.server, ca, host)
        pki.write(
            self.state_dir / "audit-policy.json",
            json.dumps(audit_policy(self.audit_reads, self.audit_users)).encode(),
        )
        self._etcd_argv = components.etcd(
            self.binaries, self.state_dir / "etcd", self._etcd_url, peer_port
        )
        try:
            self.supervisor.start("etcd", self._etcd_argv, cwd=self.state_dir)
            self._start_control(begin + timeout)
            if self.nodes:
                self._start_node(begin + timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - begin

    def _start_control(self, deadline: float) -> None:
        """Starts kube-apiserver, waits until ready, then kube-controller-manager."""
        advertise = host_addresses(self.families[:1])[0] if self.nodes else None
        self.supervisor.start(
            "kube-apiserver",
            components.apiserver(
                self.binaries,
                self.state_dir,
                self._etcd_url,
                self.api_port,
                self.topology,
                advertise,
                self.apiserver_args,
            ),
            cwd=self.state_dir,
        )
        self._wait_http(f"{self.server}/readyz", "kube-apiserver", deadline, client_cert=True)
        self.apiserver_ready_at = time.monotonic()
        kcm_port = free_port()
        self.supervisor.start(
            "kube-controller-manager",
            components.controller_manager(self.binaries, self.state_dir, kcm_port, self.topology),
            cwd=self.state_dir,
        )
        self._wait_http(
            f"https://127.0.0.1:{kcm_port}/healthz",
            "kube-controller-manager",
            deadline,
            client_cert=False,
        )
        # /healthz answers before the controllers are built; the default
        # ServiceAccount proves they run (and tests' Pods need it).
        self._wait_http(
            f"{self.server}/api/v1/namespaces/default/serviceaccounts/default",
            "kube-controller-manager",
            deadline,
            client_cert=True,
        )

    def _start_node(self, deadline: float) -> None:
        """Starts the node once the control plane runs (see ``localcluster.node``)."""
        from prereqs import require  # hack/prereqs.py: one line naming what is missing

        require("node")
        kubectl = [str(self.binaries / "kubectl"), f"--kubeconfig={self.kubeconfig}"]
        # Only RBAC authorizes here (no Node authorizer): nodes get the system:node role.
        subprocess.run(
            [*kubectl, "create", "clusterrolebinding", "dualstack-local-nodes",
             "--clusterrole=system:node", "--group=system:nodes"],
            capture_output=True, check=True,
        )  # fmt: skip
        self.node = LocalNode(
            self.state_dir, node_bin_dir(), kubectl, self.topology, self.supervisor, free_port
        )
        self.node.start(deadline)

    def _ssl_context(self, client_cert: bool) -> ssl.SSLContext:
        pki_dir = self.state_dir / "pki"
        if client_cert:
            ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
            ctx.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
            return ctx
        # kube-controller-manager serves a self-signed cert of its own.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _wait_http(self, url: str, name: str, deadline: float, *, client_cert: bool) -> None:
        ctx = self._ssl_context(client_cert)
        last = "no answer yet"
        while time.monotonic() < deadline:
            exited = self.supervisor.exited()
            if exited is not None:
                tail = exited.log_tail()
                error = PortTakenError if "address already in use" in tail else ClusterError
                raise error(f"{exited.name} exited with code {exited.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}"
            except (urllib.error.URLError, OSError) as err:
                last = str(err)
            time.sleep(0.1)
        raise ClusterError(f"{name} not ready at {url}: {last}\n{self.log_tail(name)}")
