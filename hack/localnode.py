"""One real node for the local cluster: containerd, kubelet, kube-proxy, kube-scheduler.

Everything runs as child processes with its state under ``<cluster>/node``; the
pod network is the CNI bridge plugin with host-local IPAM over both of the node's
podCIDRs; the sandbox image is built locally (``ociimage``), never pulled. This
machine's kernel has cgroup v1 and the session lacks CAP_SYS_RESOURCE, so the
kubelet runs with ``failCgroupV1: false`` and containerd clamps oom_score_adj
(``restrict_oom_score_adj``: a pod's sandbox may not go below containerd's score).

``teardown`` removes what the node made outside its directory: containers, the pod
network namespaces and mounts, the bridge, and the kubelet's, kube-proxy's and the
CNI plugins' iptables chains, so that a stopped cluster leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import ociimage

NODE_NAME = "node-1"
BRIDGE = "dsbr0"
NETWORK = "dualstack-local"  # the CNI network: its cached results are named after it
# Paths outside the node's directory the kubelet and the CNI library write to whatever
# they are told; those missing before the node started are removed with it.
HOST_DIRS = ("/var/lib/cni", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods")
CNI_RESULTS = Path("/var/lib/cni/results")
CONTAINER_LOGS = Path("/var/log/containers")
PAUSE_IMAGE = "localhost/dualstack/pause:1"
ECHO_IMAGE = "localhost/dualstack/echo:1"
BUILD_SCRIPT = Path(__file__).resolve().parent / "node" / "build.sh"
CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
# Chains the kubelet, kube-proxy and the CNI plugins (bridge ipMasq, portmap) add.
CHAIN_PREFIXES = ("KUBE-", "CNI-")


def bin_dir(build: bool = True) -> Path:
    args = [str(BUILD_SCRIPT)] + ([] if build else ["--bin-dir"])
    out = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=True)
    return Path(out.stdout.strip())


def host_addresses(families: Sequence[str]) -> list[str]:
    """The host's first global address of each family, primary family first."""
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


class LocalNode:
    """The node's processes are spawned through the cluster (recorded by PID)."""

    def __init__(
        self,
        state_dir: Path,
        binaries: Path,
        kubectl: list[str],
        families: Sequence[str],
        spawn: Callable[[str, list[str], dict[str, str]], None],
        free_port: Callable[[], int],
    ) -> None:
        self.dir = state_dir / "node"
        self.bin = binaries
        self.kubectl = kubectl
        self.families = list(families)
        self.spawn = spawn
        self.free_port = free_port
        self.socket = self.dir / "containerd.sock"

    @classmethod
    def attached(cls, state_dir: Path, binaries: Path | None = None) -> LocalNode:
        """The node under ``state_dir`` as it runs, to talk to its containerd."""
        binaries = binaries or bin_dir(build=False)
        return cls(state_dir, binaries, [], [], lambda *_: None, lambda: 0)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.bin}:{os.environ.get('PATH', '')}"}

    def start(self, pki: Path, server_families: Sequence[str], deadline: float) -> None:
        for sub in ("cni", "kubelet", "logs", "pod-logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        created = [d for d in HOST_DIRS if not Path(d).exists()]
        (self.dir / "host-dirs.json").write_text(json.dumps(created))
        self._start_containerd(deadline)
        self._import(PAUSE_IMAGE, "pause", ["/pause"])
        self._import(ECHO_IMAGE, "echo", ["/echo"])
        addresses = host_addresses(self.families)
        self._start_kubelet(pki, addresses)
        cidrs = self._wait_pod_cidrs(deadline)
        self._write_cni(cidrs)
        self._start_kube_proxy(pki.parent, server_families)
        self._start_scheduler(pki.parent)
        self._wait_ready(deadline)

    # --- the pieces ----------------------------------------------------------------------

    def _start_containerd(self, deadline: float) -> None:
        config = f"""version = 3
root = '{self.dir}/containerd/root'
state = '{self.dir}/containerd/state'
[grpc]
  address = '{self.socket}'
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '{PAUSE_IMAGE}'
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = '{self.bin / "runc"}'
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['{CNI_BIN}']
  conf_dir = '{self.dir / "cni"}'
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
"""
        (self.dir / "containerd.toml").write_text(config)
        self.spawn(
            "containerd",
            [str(self.bin / "containerd"), "--config", str(self.dir / "containerd.toml")],
            self.env,
        )
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("containerd did not open its socket")
            time.sleep(0.05)

    def ctr(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            [str(self.bin / "ctr"), "-a", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {out.stderr}")
        return out.stdout

    def _import(self, name: str, binary: str, entrypoint: list[str]) -> None:
        image = ociimage.Image(name, [ociimage.File(binary, self.bin / binary)], entrypoint)
        self.ctr("images", "import", str(ociimage.write(image, self.dir / f"{binary}.tar")))

    def _start_kubelet(self, pki: Path, addresses: list[str]) -> None:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this machine's cgroups are v1
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "address": "127.0.0.1",
            "port": self.free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.free_port(),
            "tlsCertFile": str(pki / "kubelet.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet.key"),
            "failSwapOn": False,
            "podLogsDir": str(self.dir / "pod-logs"),
            "resolvConf": "/etc/resolv.conf",
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
        path = self.dir / "kubelet.json"
        path.write_text(json.dumps(config))
        self.spawn(
            "kubelet",
            [
                str(self.bin / "kubelet"),
                f"--config={path}",
                f"--kubeconfig={pki.parent / 'kubelet.kubeconfig'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={','.join(addresses)}",
                f"--root-dir={self.dir / 'kubelet'}",
                "--v=1",
            ],
            self.env,
        )

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
            if cidrs:
                return list(cidrs)
            time.sleep(0.2)
        raise RuntimeError("the node got no podCIDRs (is the controller-manager allocating?)")

    def _write_cni(self, cidrs: list[str]) -> None:
        routes = [{"dst": "0.0.0.0/0" if ":" not in c else "::/0"} for c in cidrs]
        conf = {
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": c}] for c in cidrs],
                        "routes": routes,
                        "dataDir": str(self.dir / "cni-ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.dir / "cni" / "10-dualstack.conflist").write_text(json.dumps(conf))

    def _start_kube_proxy(self, state: Path, server_families: Sequence[str]) -> None:
        from localcluster import CLUSTER_CIDRS

        cidrs = ",".join(CLUSTER_CIDRS[f] for f in server_families)  # type: ignore[index]
        self.spawn(
            "kube-proxy",
            [
                str(self.bin / "kube-proxy"),
                f"--kubeconfig={state / 'kube-proxy.kubeconfig'}",
                f"--hostname-override={NODE_NAME}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={cidrs}",
                f"--metrics-bind-address=127.0.0.1:{self.free_port()}",
                f"--healthz-bind-address=127.0.0.1:{self.free_port()}",
                "--conntrack-max-per-core=0",  # leave the host's conntrack table alone
                "--v=1",
            ],
            self.env,
        )

    def _start_scheduler(self, state: Path) -> None:
        config = state / "scheduler.kubeconfig"
        self.spawn(
            "kube-scheduler",
            [
                str(self.bin / "kube-scheduler"),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.free_port()}",
                "--v=1",
            ],
            self.env,
        )

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
    node = LocalNode.attached(state_dir)
    node.ctr("tasks", "kill", "-s", "SIGKILL", container_id.removeprefix("containerd://"))


def import_image(state_dir: Path, archive: Path) -> None:
    """Loads an OCI archive into the node's containerd (namespace k8s.io)."""
    node = LocalNode.attached(state_dir)
    node.ctr("images", "import", str(archive))


# --- leaving nothing behind ------------------------------------------------------------------


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def remove_containers(state_dir: Path, binaries: Path) -> None:
    """Kills and deletes every container containerd runs for the node (while it runs).

    Pods' sandboxes are stopped through the CRI first, so that the CNI plugins remove
    their addresses, veths and iptables rules themselves.
    """
    node = LocalNode.attached(state_dir, binaries)
    if not node.socket.exists():
        return
    for task in node.ctr("tasks", "ls", "-q", check=False).split():
        node.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
    deadline = time.monotonic() + 10
    while node.ctr("tasks", "ls", "-q", check=False).split() and time.monotonic() < deadline:
        time.sleep(0.1)
    for task in node.ctr("tasks", "ls", "-q", check=False).split():
        node.ctr("tasks", "delete", "-f", task, check=False)
    for container in node.ctr("containers", "ls", "-q", check=False).split():
        node.ctr("containers", "delete", container, check=False)


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
    """(command, table) -> the node's chains left in that table."""
    found: dict[tuple[str, str], list[str]] = {}
    for command in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            out = _run(command, "-t", table, "-S")
            chains = [
                line.split()[1]
                for line in out.stdout.splitlines()
                if line.startswith("-N ") and line.split()[1].startswith(CHAIN_PREFIXES)
            ]
            if chains:
                found[(command, table)] = chains
    return found


def _shims(socket: Path) -> list[int]:
    """containerd's shims for this node (started by containerd, not by us): found by
    their command line naming the node's socket."""
    marker = f"-address {socket}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                    pids.append(int(proc.name))
    return pids


def _host_files(root: Path) -> list[Path]:
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


def host_leftovers(root: Path) -> list[str]:
    """What nodes under ``root`` left on the host: for the test session's stray check."""
    out = [f"mount {m}" for m in mounts_under(root)]
    if _run("ip", "link", "show", BRIDGE).returncode == 0:
        out.append(f"interface {BRIDGE}")
    out += [f"{cmd} -t {table}: {chains}" for (cmd, table), chains in our_chains().items()]
    out += [f"file {f}" for f in _host_files(root)]
    return out


def teardown_host(state_dir: Path) -> list[str]:
    """After the processes stopped: shims still exiting, mounts, the bridge, iptables
    chains and files outside the node's directory; returns what was still there."""
    left = []
    for pid in _shims(state_dir / "node" / "containerd.sock"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        left.append(f"shim pid {pid}")
    for point in mounts_under(state_dir / "node"):
        _run("umount", "-l", point)
        left.append(f"mount {point}")
    if _run("ip", "link", "show", BRIDGE).returncode == 0:
        _run("ip", "link", "delete", BRIDGE)
        left.append(f"interface {BRIDGE}")
    for (command, table), chains in our_chains().items():
        # Rules in the built-in chains that jump to ours go first, then ours.
        for line in _run(command, "-t", table, "-S").stdout.splitlines():
            parts = shlex.split(line)
            if parts[:1] == ["-A"] and "-j" in parts:
                target = parts[parts.index("-j") + 1]
                if target in chains and not parts[1].startswith(CHAIN_PREFIXES):
                    _run(command, "-t", table, "-D", *parts[1:])
        for chain in chains:
            _run(command, "-t", table, "-F", chain)
        for chain in chains:
            _run(command, "-t", table, "-X", chain)
        left.append(f"{command} -t {table}: {len(chains)} chains")
    for path in _host_files(state_dir):
        path.unlink(missing_ok=True)
    record = state_dir / "node" / "host-dirs.json"
    if record.exists():
        for created in json.loads(record.read_text()):
            for point in mounts_under(Path(created)):
                _run("umount", "-l", point)
            shutil.rmtree(created, ignore_errors=True)
    with contextlib.suppress(OSError):
        (state_dir / "node" / "containerd.sock").unlink()
    return left
