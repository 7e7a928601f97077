"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager.

There is no container runtime on our machines, so, like controller-runtime's
envtest, the control plane runs as plain processes built from Go modules
(``hack/controlplane/build.sh``). ``make cluster`` and the pytest fixtures both
use this module, so tests exercise exactly what developers run by hand.

Every process is started in its own process group, recorded by PID in the state
directory, and stopped by that PID only (after checking that the PID still runs
one of our commands), so nothing else on the machine is ever signalled.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Family = Literal["ipv4", "ipv6"]

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "hack" / "controlplane" / "build.sh"

SERVICE_CIDRS: dict[Family, str] = {"ipv4": "10.96.0.0/16", "ipv6": "fd00:10:96::/112"}
CLUSTER_CIDRS: dict[Family, str] = {"ipv4": "10.244.0.0/16", "ipv6": "fd00:10:244::/56"}
NODE_CIDR_MASK: dict[Family, int] = {"ipv4": 24, "ipv6": 64}
API_FAMILY: dict[Family, str] = {"ipv4": "IPv4", "ipv6": "IPv6"}

PIDS_FILE = "pids.json"
AUDIT_LOG = "audit.log"
# The operator's writes to Services and policies, as the server saw them: tests and
# benchmarks count them from the server's side with this log. Only the operator's
# identities are logged, so populating tens of thousands of Services stays fast.
OPERATOR_USERS = [
    "dualstack-operator",  # the operator_kubeconfig's client certificate
    "system:serviceaccount:dualstack-system:dualstack-operator",  # as deployed
]
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        {
            "level": "Metadata",
            "users": OPERATOR_USERS,
            "verbs": ["create", "update", "patch", "delete"],
            "resources": [
                {"group": "", "resources": ["services"]},
                {
                    "group": "dualstack.dev",
                    "resources": [
                        "dualstackpolicies",
                        "dualstackpolicies/status",
                        "dualstackadmissions",
                    ],
                },
                {
                    "group": "admissionregistration.k8s.io",
                    "resources": [
                        "mutatingadmissionpolicies",
                        "mutatingadmissionpolicybindings",
                        "validatingadmissionpolicies",
                        "validatingadmissionpolicybindings",
                    ],
                },
            ],
        },
        {"level": "None"},
    ],
}
START_TIMEOUT_S = 120.0


class ClusterError(RuntimeError):
    """The control plane could not be started or reached."""


class PortTakenError(ClusterError):
    """A chosen port was taken before the component could bind it."""


def parse_families(text: str) -> tuple[Family, ...]:
    """Parses ``ipv4``, ``ipv6``, ``ipv4,ipv6`` or ``ipv6,ipv4`` (first = primary)."""
    parts = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    valid: set[tuple[str, ...]] = {("ipv4",), ("ipv6",), ("ipv4", "ipv6"), ("ipv6", "ipv4")}
    if parts not in valid:
        raise ValueError(f"FAMILIES must be one of ipv4, ipv6, ipv4,ipv6, ipv6,ipv4 (got {text!r})")
    return tuple("ipv4" if p == "ipv4" else "ipv6" for p in parts)


def bin_dir(build: bool = True) -> Path:
    """The cached binaries' directory; builds them first unless ``build`` is False."""
    args = [str(BUILD_SCRIPT)] if build else [str(BUILD_SCRIPT), "--bin-dir"]
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def free_port() -> int:
    """A loopback TCP port that is free now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- certificates ---------------------------------------------------------------------------


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass(frozen=True)
class _Issued:
    cert: bytes
    key: bytes


def _issue(
    ca_cert: x509.Certificate | None,
    ca_key: ec.EllipticCurvePrivateKey | None,
    subject: x509.Name,
    *,
    server_sans: Sequence[x509.GeneralName] = (),
    client: bool = False,
) -> tuple[_Issued, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    is_ca = ca_cert is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if ca_cert is None else ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if server_sans:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(
                x509.SubjectAlternativeName(list(server_sans)), critical=False
            )
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    signer = key if ca_key is None else ca_key
    cert = builder.sign(signer, hashes.SHA256())
    return _Issued(_pem_cert(cert), _pem_key(key)), cert, key


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _kubeconfig(server: str, ca: bytes, client: _Issued, user: str) -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert),
                    "client-key-data": b64(client.key),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    return json.dumps(doc, indent=2)  # JSON is valid YAML; kubectl reads it.


# --- processes ------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def set_pdeathsig() -> None:
    """Runs in the child: SIGKILL it if the test process dies without tearing down."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_port_free(port: int, deadline: float) -> bool:
    """Whether a listener could bind 127.0.0.1:``port`` (as the Go servers do, with
    SO_REUSEADDR) before the deadline; polls until then."""
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return True
            except OSError:
                pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _is_ours(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line mentions our state directory."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it if it is our child)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # exited, not yet reaped by its parent


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after a grace period; each process leads its own group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if not _wait_gone(pid, 15.0):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)


def stop_recorded(state_dir: Path) -> list[str]:
    """Stops the processes recorded in ``state_dir`` by PID; returns what it stopped.

    A PID is signalled only if it still runs a command naming ``state_dir``, so a
    PID reused by an unrelated process after a crash is left alone.
    """
    record = state_dir / PIDS_FILE
    if not record.exists():
        return []
    entries: list[dict[str, object]] = json.loads(record.read_text())
    marker = str(state_dir.resolve())
    stopped: list[str] = []
    node = any(e["name"] == "containerd" for e in entries)
    if node:
        # The kubelet first (it would restart what is removed), then every container,
        # while containerd still runs.
        from localnode import bin_dir as node_bin_dir
        from localnode import remove_containers

        for entry in entries:
            pid = int(str(entry["pid"]))
            if entry["name"] == "kubelet" and _is_ours(pid, marker):
                _terminate(pid)
        remove_containers(state_dir, node_bin_dir(build=False))
    # Reverse start order: the node, controller-manager, apiserver, then etcd.
    for entry in reversed(entries):
        pid = int(str(entry["pid"]))
        name = str(entry["name"])
        if not _is_ours(pid, marker):
            continue
        _terminate(pid)
        stopped.append(f"{name} (pid {pid})")
    record.unlink()
    if node or (state_dir / "node").exists():
        from localnode import teardown_host

        stopped += [f"left by the node, removed: {what}" for what in teardown_host(state_dir)]
    return stopped


# --- the cluster ----------------------------------------------------------------------------


class LocalCluster:
    """etcd + kube-apiserver + kube-controller-manager under one state directory."""

    def __init__(
        self,
        state_dir: Path,
        families: Sequence[Family] = ("ipv4", "ipv6"),
        binaries: Path | None = None,
        *,
        audit_reads: bool = False,
        apiserver_args: Sequence[str] = (),
        nodes: int = 0,
    ) -> None:
        self.state_dir = state_dir.resolve()
        if nodes not in (0, 1):
            raise ClusterError("NODES may be 0 or 1")
        self.nodes = nodes  # 1: a real node (containerd, kubelet, kube-proxy, scheduler)
        self.apiserver_args = tuple(apiserver_args)
        # Also log the operator's reads and watches (fault tests count every request).
        self.audit_reads = audit_reads
        self.families: tuple[Family, ...] = tuple(families)
        self._binaries = binaries
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.operator_kubeconfig = self.state_dir / "operator.kubeconfig"
        self.api_port = 0
        self.server = ""
        self.start_seconds = 0.0
        self._etcd_url = ""
        self._etcd_argv: list[str] = []
        self._preexec: Callable[[], None] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def service_cidrs(self) -> list[str]:
        return [SERVICE_CIDRS[f] for f in self.families]

    @property
    def api_families(self) -> list[str]:
        """The families as the Service API spells them (IPv4/IPv6), primary first."""
        return [API_FAMILY[f] for f in self.families]

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
        self._preexec = set_pdeathsig if die_with_parent else None
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
        begin = time.monotonic()
        deadline = begin + timeout
        for name in ("kube-controller-manager", "kube-apiserver"):
            self._stop_one(name)
        self.families = tuple(families)
        try:
            while True:
                # The stopped server's port can stay taken a moment (a socket of the
                # killed process the kernel has not let go): the restart keeps its port.
                wait_port_free(self.api_port, deadline)
                try:
                    self._start_control(deadline)
                    return
                except PortTakenError:
                    for name in ("kube-controller-manager", "kube-apiserver"):
                        self._stop_one(name)
                    if time.monotonic() > deadline:
                        raise
        except BaseException:
            self.stop()
            raise

    def restart_apiserver(self, timeout: float = START_TIMEOUT_S, *, crash: bool = False) -> None:
        """Stops and starts kube-apiserver (and its controller-manager) on the same etcd
        and port: every watch open against it is dropped. With ``crash`` it is killed
        (SIGKILL), not shut down: clients get refused connections at once."""
        if crash:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._procs["kube-apiserver"].pid, signal.SIGKILL)
        self.reconfigure(self.families, timeout)

    def stop_etcd(self) -> None:
        """Stops etcd (the API server keeps running, and fails its requests)."""
        self._stop_one("etcd")

    def start_etcd(self, timeout: float = START_TIMEOUT_S) -> None:
        """Starts etcd again on its data and port; returns once it is healthy."""
        self._spawn("etcd", self._etcd_argv)
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
        os.kill(self._procs["kube-apiserver"].pid, signum)

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
        for proc in self._procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=1)
        self._procs.clear()
        return stopped

    def audit_events(self) -> list[dict[str, Any]]:
        """Completed operator writes (Services, policies, admission objects), oldest first."""
        path = self.state_dir / AUDIT_LOG
        if not path.exists():
            return []
        events = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("stage") == "ResponseComplete":
                    events.append(event)
        return events

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
        self._write_pki()
        self._etcd_argv = [
            str(self.binaries / "etcd"),
            "--name=local",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={self._etcd_url}",
            f"--advertise-client-urls={self._etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=local=http://127.0.0.1:{peer_port}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync",  # throwaway state: speed over durability
            "--log-level=warn",
        ]
        try:
            self._spawn("etcd", self._etcd_argv)
            self._start_control(begin + timeout)
            if self.nodes:
                self._start_node(begin + timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - begin

    def _start_control(self, deadline: float) -> None:
        """Starts kube-apiserver, waits until ready, then kube-controller-manager."""
        pki = self.state_dir / "pki"
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries / "kube-apiserver"),
                f"--etcd-servers={self._etcd_url}",
                *self._listen_args(),
                f"--secure-port={self.api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={','.join(self.service_cidrs)}",
                "--allow-privileged=true",
                "--profiling=false",
                f"--audit-policy-file={self.state_dir / 'audit-policy.json'}",
                f"--audit-log-path={self.state_dir / AUDIT_LOG}",
                "--audit-log-mode=blocking",
                "--v=1",
                *self.apiserver_args,
            ],
        )
        self._wait_http(f"{self.server}/readyz", "kube-apiserver", deadline, client_cert=True)
        kcm_port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries / "kube-controller-manager"),
                f"--kubeconfig={self.state_dir / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={pki / 'kcm'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-cluster-ip-range={','.join(self.service_cidrs)}",
                "--allocate-node-cidrs=true",
                f"--cluster-cidr={','.join(CLUSTER_CIDRS[f] for f in self.families)}",
                # A mask flag for a family the cluster lacks is a fatal error.
                *(f"--node-cidr-mask-size-{f}={NODE_CIDR_MASK[f]}" for f in self.families),
                "--controllers=*",
                "--v=1",
            ],
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

    def _listen_args(self) -> list[str]:
        """Loopback only, unless a node's pods must reach the API server: then on the
        host's address too, published as the `kubernetes` Service's endpoint."""
        if not self.nodes:
            return [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
            ]
        from localnode import host_addresses

        return [
            "--bind-address=0.0.0.0",
            f"--advertise-address={host_addresses(self.families[:1])[0]}",
            "--endpoint-reconciler-type=lease",
        ]

    def _start_node(self, deadline: float) -> None:
        """Starts the node once the control plane runs (see ``localnode``)."""
        from localnode import LocalNode
        from localnode import bin_dir as node_bin_dir

        kubectl = [str(self.binaries / "kubectl"), f"--kubeconfig={self.kubeconfig}"]
        # Only RBAC authorizes here (no Node authorizer): nodes get the system:node role.
        subprocess.run(
            [*kubectl, "create", "clusterrolebinding", "dualstack-local-nodes",
             "--clusterrole=system:node", "--group=system:nodes"],
            capture_output=True, check=True,
        )  # fmt: skip
        node = LocalNode(
            self.state_dir, node_bin_dir(), kubectl, self.families, self._spawn, free_port
        )
        node.start(self.state_dir / "pki", self.families, deadline)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with (self.state_dir / "logs" / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: stopped by PID, never by name
                preexec_fn=self._preexec,  # only sets PDEATHSIG
                cwd=self.state_dir,
            )
        self._procs[name] = proc
        entries = [e for e in self._recorded() if e["name"] != name]
        entries.append({"name": name, "pid": proc.pid})
        (self.state_dir / PIDS_FILE).write_text(json.dumps(entries))

    def _recorded(self) -> list[dict[str, object]]:
        record = self.state_dir / PIDS_FILE
        entries: list[dict[str, object]] = json.loads(record.read_text()) if record.exists() else []
        return entries

    def _stop_one(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        _terminate(proc.pid)
        (self.state_dir / PIDS_FILE).write_text(
            json.dumps([e for e in self._recorded() if e["name"] != name])
        )

    def _ssl_context(self, client_cert: bool) -> ssl.SSLContext:
        pki = self.state_dir / "pki"
        if client_cert:
            ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
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
            for started, proc in self._procs.items():
                if proc.poll() is not None:
                    tail = self.log_tail(started)
                    error = PortTakenError if "address already in use" in tail else ClusterError
                    raise error(f"{started} exited with code {proc.returncode}:\n{tail}")
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

    def _write_pki(self) -> None:
        pki = self.state_dir / "pki"
        (pki / "kcm").mkdir(parents=True, exist_ok=True)
        ca, ca_cert, ca_key = _issue(None, None, _name("dualstack-local-ca"))
        _write(pki / "ca.crt", ca.cert, 0o644)
        _write(pki / "ca.key", ca.key)

        sans: list[x509.GeneralName] = [
            x509.DNSName(n)
            for n in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
        if self.nodes:
            from localnode import host_addresses

            # Pods reach the API server through the `kubernetes` Service at these.
            sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in host_addresses(self.families)]
        # The first address of each service CIDR is the `kubernetes` Service's ClusterIP.
        sans += [x509.IPAddress(ipaddress.ip_network(c)[1]) for c in self.service_cidrs]
        serving, _, _ = _issue(ca_cert, ca_key, _name("kube-apiserver"), server_sans=sans)
        _write(pki / "apiserver.crt", serving.cert, 0o644)
        _write(pki / "apiserver.key", serving.key)

        admin, _, _ = _issue(ca_cert, ca_key, _name("admin", "system:masters"), client=True)
        _write(pki / "admin.crt", admin.cert, 0o644)
        _write(pki / "admin.key", admin.key)
        # The bootstrap RBAC policy binds this user; controllers then use their own
        # ServiceAccounts (--use-service-account-credentials), as in a real cluster.
        kcm, _, _ = _issue(ca_cert, ca_key, _name("system:kube-controller-manager"), client=True)

        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(pki / "sa.key", _pem_key(sa_key))
        _write(
            pki / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )

        _write(self.kubeconfig, _kubeconfig(self.server, ca.cert, admin, "admin").encode())
        # A separate identity for the operator under test, so the audit log tells its
        # writes from the test's own.
        operator, _, _ = _issue(
            ca_cert, ca_key, _name("dualstack-operator", "system:masters"), client=True
        )
        _write(
            self.operator_kubeconfig,
            _kubeconfig(self.server, ca.cert, operator, "dualstack-operator").encode(),
        )
        if self.nodes:
            self._write_node_pki(ca_cert, ca_key, ca.cert)
        policy = json.loads(json.dumps(AUDIT_POLICY))
        if self.audit_reads:
            every = {"level": "Metadata", "users": OPERATOR_USERS}
            policy["rules"].insert(-1, every)
        _write(self.state_dir / "audit-policy.json", json.dumps(policy).encode())
        _write(
            self.state_dir / "controller-manager.kubeconfig",
            _kubeconfig(self.server, ca.cert, kcm, "system:kube-controller-manager").encode(),
        )

    def _write_node_pki(
        self, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, ca: bytes
    ) -> None:
        """The node's identities: the kubelet (client and serving), kube-proxy and the
        scheduler, each a user the bootstrap RBAC policy knows."""
        from localnode import NODE_NAME, host_addresses

        pki = self.state_dir / "pki"
        sans: list[x509.GeneralName] = [x509.DNSName(NODE_NAME), x509.DNSName("localhost")]
        sans += [
            x509.IPAddress(ipaddress.ip_address(a))
            for a in ("127.0.0.1", *host_addresses(self.families))
        ]
        serving, _, _ = _issue(ca_cert, ca_key, _name(NODE_NAME), server_sans=sans)
        _write(pki / "kubelet.crt", serving.cert, 0o644)
        _write(pki / "kubelet.key", serving.key)
        for file, user, group in (
            ("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
            ("kube-proxy", "system:kube-proxy", None),
            ("scheduler", "system:kube-scheduler", None),
        ):
            issued, _, _ = _issue(ca_cert, ca_key, _name(user, group), client=True)
            config = _kubeconfig(self.server, ca, issued, user)
            _write(self.state_dir / f"{file}.kubeconfig", config.encode())


# --- command line (make cluster / make cluster-down) ----------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="(re)start the control plane in the background")
    up.add_argument("--state-dir", type=Path, default=REPO / ".local" / "cluster")
    up.add_argument("--families", default="ipv4,ipv6")
    up.add_argument("--nodes", type=int, default=0, help="0 (no node) or 1 (a real node)")
    down = sub.add_parser("down", help="stop the processes `up` started, by PID")
    down.add_argument("--state-dir", type=Path, default=REPO / ".local" / "cluster")
    args = parser.parse_args(argv)

    if args.command == "down":
        stopped = stop_recorded(args.state_dir.resolve())
        print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
        return 0

    try:
        families = parse_families(args.families)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cluster = LocalCluster(args.state_dir, families, nodes=args.nodes)
    try:
        cluster.start()
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"local control plane up in {cluster.start_seconds:.1f}s: {cluster.server}\n"
        f"  service CIDRs: {', '.join(cluster.service_cidrs)} "
        f"(primary {cluster.api_families[0]})\n"
        f"  logs: {os.path.relpath(cluster.state_dir / 'logs')}/\n\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  kubectl get --raw /version\n\n"
        f"stop it with: make cluster-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
