"""Fixtures: real local control planes owned by the test session, one namespace per test."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from dualstack_operator.api.crd import KINDS
from localcluster import REPO, Family, LocalCluster, bin_dir
from localcluster.node import host_leftovers
from support.kube import Kubectl
from support.operator_proc import OperatorProcess

CRDS = [REPO / "crds" / kind.file for kind in KINDS]
TESTS = Path(__file__).parent
# Fixtures that build or run the control plane's binaries; every cluster fixture uses one.
CONTROL_PLANE = frozenset({"binaries", "helm"})
# The slow end-to-end tiers: a real node, the image, the deployed operator, Helm.
E2E = frozenset({"node_cluster", "noded", "operator_image", "helm", "single_node_cluster"})
OWN_NODE = "single_node_cluster"  # a test's own node cluster: such tests run last
CONTROL_PLANE_PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubelet")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from where a test lives and what it uses, never by hand: a test under
    ``integration/`` or ``e2e/``, or one that asks for a control-plane fixture, is
    ``cluster``; one under ``e2e/`` or using a node, the image or Helm is also ``e2e``."""
    items.sort(key=lambda item: OWN_NODE in getattr(item, "fixturenames", ()))  # stable
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        uses = set(getattr(item, "fixturenames", ()))
        if tier in ("integration", "e2e") or uses & CONTROL_PLANE:
            item.add_marker(pytest.mark.cluster)
        if tier == "e2e" or uses & E2E:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _starts_no_control_plane(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test not marked ``cluster`` must start no control-plane process (the stray-process
    check, per test): ``make unit`` is then truly free of them. Processes that were
    running before it (a session's clusters) are not its doing."""
    if request.node.get_closest_marker("cluster") is not None:
        yield
        return
    before = set(_stray_processes("", CONTROL_PLANE_PROCESSES))
    yield
    started = set(_stray_processes("", CONTROL_PLANE_PROCESSES)) - before
    if started:
        pytest.fail(f"not marked cluster, but started: {sorted(started)}")


@pytest.fixture(scope="session")
def helm() -> Path:
    """Helm, built from its Go module (hack/helm; cached per user)."""
    out = subprocess.run(
        [str(REPO / "hack" / "helm" / "build.sh")], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


@pytest.fixture(scope="session")
def binaries() -> Path:
    """The control-plane binaries (built on first use, then cached per user)."""
    return bin_dir(build=True)


def _cluster(
    factory: pytest.TempPathFactory,
    binaries: Path,
    families: tuple[Family, ...],
    *,
    audit_reads: bool = False,
    apiserver_args: tuple[str, ...] = (),
    nodes: int = 0,
) -> Generator[LocalCluster, None, None]:
    prefix = "-".join(families) + ("-faults" if audit_reads else "") + ("-node" if nodes else "")
    cluster = LocalCluster(
        factory.mktemp(prefix),
        families,
        binaries,
        audit_reads=audit_reads,
        apiserver_args=apiserver_args,
        nodes=nodes,
    )
    cluster.start(die_with_parent=True)
    try:
        # The CRD is part of every cluster the tests use, as `kubectl apply` installs it.
        admin = Kubectl(binaries / "kubectl", cluster.kubeconfig)
        for crd in CRDS:
            admin.run("apply", "-f", str(crd))
            admin.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def dual_cluster(
    tmp_path_factory: pytest.TempPathFactory, binaries: Path
) -> Iterator[LocalCluster]:
    """Dual-stack, IPv4 primary: the shape most clusters migrate to."""
    yield from _cluster(tmp_path_factory, binaries, ("ipv4", "ipv6"))


@pytest.fixture(scope="session")
def single_cluster(
    tmp_path_factory: pytest.TempPathFactory, binaries: Path
) -> Iterator[LocalCluster]:
    """Single-stack IPv4: where most migrations start."""
    yield from _cluster(tmp_path_factory, binaries, ("ipv4",))


@pytest.fixture(scope="session")
def ipv6_cluster(
    tmp_path_factory: pytest.TempPathFactory, binaries: Path
) -> Iterator[LocalCluster]:
    """Dual-stack, IPv6 primary (started only by tests that ask for it)."""
    yield from _cluster(tmp_path_factory, binaries, ("ipv6", "ipv4"))


@pytest.fixture(scope="session")
def fault_cluster(
    tmp_path_factory: pytest.TempPathFactory, binaries: Path
) -> Iterator[LocalCluster]:
    """Dual-stack, for fault tests alone: they stop its etcd, restart and SIGSTOP its
    API server, and throttle the operator's user; its audit log has every operator
    request, reads included. Its API server has a small total concurrency (as a busy
    server has little to spare), so one share of it is one seat."""
    yield from _cluster(
        tmp_path_factory,
        binaries,
        ("ipv4", "ipv6"),
        audit_reads=True,
        apiserver_args=("--max-requests-inflight=30", "--max-mutating-requests-inflight=10"),
    )


@pytest.fixture(scope="session")
def operator_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's OCI image archive, as `make image` builds it (no Docker)."""
    from image import build

    return build(tmp_path_factory.mktemp("image") / "operator.tar")


class NodeSlot:
    """One node cluster at a time (its bridge and iptables chains are host-wide): the
    shared dual-stack one, or a test's own, each stopped before the other starts."""

    def __init__(self, factory: pytest.TempPathFactory, binaries: Path) -> None:
        self.factory, self.binaries = factory, binaries
        self.running: Generator[LocalCluster, None, None] | None = None
        self.cluster: LocalCluster | None = None

    def get(self, families: tuple[Family, ...], shared: bool) -> LocalCluster:
        if shared and self.cluster is not None and self.cluster.families == families:
            return self.cluster
        self.release()
        self.running = _cluster(self.factory, self.binaries, families, nodes=1)
        self.cluster = next(self.running)
        return self.cluster

    def release(self) -> None:
        if self.running is not None:
            self.running.close()  # the generator's finally stops the cluster, by PID
        self.running = self.cluster = None


@pytest.fixture(scope="session")
def node_slot(tmp_path_factory: pytest.TempPathFactory, binaries: Path) -> Iterator[NodeSlot]:
    slot = NodeSlot(tmp_path_factory, binaries)
    try:
        yield slot
    finally:
        slot.release()


@pytest.fixture
def node_cluster(node_slot: NodeSlot) -> LocalCluster:
    """Dual-stack with one real node (containerd, kubelet, kube-proxy, scheduler,
    CoreDNS), shared by the tests that use it."""
    return node_slot.get(("ipv4", "ipv6"), shared=True)


@pytest.fixture
def single_node_cluster(node_slot: NodeSlot) -> Iterator[LocalCluster]:
    """A test's own single-stack IPv4 cluster with a node (it may convert it); the
    tests that use it run last, so that the shared one starts once."""
    yield node_slot.get(("ipv4",), shared=False)
    node_slot.release()


def _namespace(
    request: pytest.FixtureRequest, cluster: LocalCluster, binaries: Path
) -> Iterator[Kubectl]:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    admin = Kubectl(binaries / "kubectl", cluster.kubeconfig)
    admin.run("create", "namespace", name)
    try:
        yield admin.in_namespace(name)
    finally:
        admin.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def dual(
    request: pytest.FixtureRequest, dual_cluster: LocalCluster, binaries: Path
) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace of the dual-stack cluster."""
    yield from _namespace(request, dual_cluster, binaries)


@pytest.fixture
def faulty(
    request: pytest.FixtureRequest, fault_cluster: LocalCluster, binaries: Path
) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace of the fault-test cluster."""
    yield from _namespace(request, fault_cluster, binaries)


@pytest.fixture
def noded(
    request: pytest.FixtureRequest, node_cluster: LocalCluster, binaries: Path
) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace of the cluster with a node."""
    yield from _namespace(request, node_cluster, binaries)


@pytest.fixture
def single(
    request: pytest.FixtureRequest, single_cluster: LocalCluster, binaries: Path
) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace of the single-stack IPv4 cluster."""
    yield from _namespace(request, single_cluster, binaries)


@pytest.fixture
def ipv6first(
    request: pytest.FixtureRequest, ipv6_cluster: LocalCluster, binaries: Path
) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace of the IPv6-primary dual-stack cluster."""
    yield from _namespace(request, ipv6_cluster, binaries)


@pytest.fixture
def start_operator(
    tmp_path: Path,
) -> Iterator[Callable[..., OperatorProcess]]:
    """Starts the operator for a test's namespace; stops it (by PID) at teardown."""
    started: list[OperatorProcess] = []

    def start(
        cluster: LocalCluster,
        kubectl: Kubectl,
        *args: str,
        env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
    ) -> OperatorProcess:
        assert kubectl.namespace
        log = tmp_path / f"operator-{len(started)}.log"
        config = kubeconfig or cluster.operator_kubeconfig
        proc = OperatorProcess(config, [kubectl.namespace], log, args, env)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def _stray_processes(marker: str, programs: tuple[str, ...] = ()) -> list[str]:
    """Processes (other than zombies) whose command line names ``marker`` (and, if given,
    one of ``programs``)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        program = Path(cmdline.split(b"\0", 1)[0].decode(errors="replace")).name
        named = not programs or program in programs
        if marker.encode() in cmdline and named and state != "Z":
            text = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {text[:120]}")
    return found


@pytest.hookimpl(trylast=True)  # after the session fixtures were torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fails the run if any process started under this session's temp dir outlived it."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    base = factory.getbasetemp()
    stray = _stray_processes(str(base))
    # What a node makes outside its directory: mounts, the bridge, iptables chains, files.
    stray += host_leftovers(base)
    if stray:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nleft behind by the test run:\n  " + "\n  ".join(stray))
