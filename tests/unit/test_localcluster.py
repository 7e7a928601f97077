"""The launcher's own logic, without starting a control plane."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from localcluster import (
    AuditLog,
    Family,
    Supervisor,
    Topology,
    components,
    parse_families,
    service_patches,
    stop_recorded,
    wait_port_free,
)
from localcluster.audit import OPERATOR_USERS
from localcluster.audit import policy as audit_policy
from localcluster.node import cni, dns, kubelet


@pytest.mark.parametrize("text", ["ipv4", "ipv6", "ipv4,ipv6", "ipv6,ipv4", " IPv6 , IPv4 "])
def test_families_accepted(text: str) -> None:
    fams = parse_families(text)
    assert ",".join(fams) == text.replace(" ", "").lower()


@pytest.mark.parametrize("text", ["", "ipv5", "ipv4,ipv4", "ipv4,ipv6,ipv4", "dual"])
def test_families_refused(text: str) -> None:
    with pytest.raises(ValueError, match="FAMILIES must be one of"):
        parse_families(text)


def test_stop_leaves_unrelated_processes_alone(tmp_path: Path) -> None:
    """A recorded PID that now runs something else (PID reuse) is never signalled."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "pids.json").write_text(json.dumps([{"name": "etcd", "pid": bystander.pid}]))
        assert stop_recorded(tmp_path) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_restart_waits_while_its_port_is_held() -> None:
    """A listener still holding the port (a killed server's socket the kernel keeps)
    makes the wait fail at its deadline; once it is gone the port is free at once."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        assert not wait_port_free(port, time.monotonic() + 0.3)
    finally:
        held.close()
    assert wait_port_free(port, time.monotonic() + 5)


# --- the command lines (pure) -----------------------------------------------------------

BIN, STATE = Path("/cache/bin"), Path("/state")


def flags(argv: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in argv[1:] if "=" in a)


@pytest.mark.parametrize(
    ("families", "services"),
    [
        (("ipv4",), "10.96.0.0/16"),
        (("ipv6", "ipv4"), "fd00:10:96::/112,10.96.0.0/16"),
    ],
)
def test_the_apiserver_serves_the_families_primary_first(
    families: tuple[Family, ...], services: str
) -> None:
    argv = components.apiserver(BIN, STATE, "http://127.0.0.1:1", 6443, Topology(families))
    assert argv[0] == "/cache/bin/kube-apiserver"
    got = flags(argv)
    assert got["service-cluster-ip-range"] == services
    assert got["secure-port"] == "6443"
    assert got["authorization-mode"] == "RBAC"
    assert got["audit-log-path"] == "/state/audit.log"
    assert (got["bind-address"], got["endpoint-reconciler-type"]) == ("127.0.0.1", "none")


def test_with_a_node_the_apiserver_listens_where_pods_reach_it() -> None:
    argv = components.apiserver(
        BIN, STATE, "http://e", 1, Topology(nodes=1), "192.0.2.7", ("--max-requests-inflight=30",)
    )
    got = flags(argv)
    everywhere = "0.0.0.0"  # noqa: S104 - what the flag says, not a socket we bind
    assert (got["bind-address"], got["advertise-address"]) == (everywhere, "192.0.2.7")
    assert got["endpoint-reconciler-type"] == "lease"
    assert argv[-1] == "--max-requests-inflight=30", "extra flags come last: they win"


def test_the_controller_manager_gets_a_mask_only_for_the_families_it_has() -> None:
    """A mask flag for a family the cluster lacks is fatal to kube-controller-manager."""
    single = flags(components.controller_manager(BIN, STATE, 1, Topology(("ipv4",))))
    assert "node-cidr-mask-size-ipv4" in single
    assert "node-cidr-mask-size-ipv6" not in single
    dual = flags(components.controller_manager(BIN, STATE, 1, Topology(("ipv6", "ipv4"))))
    assert dual["cluster-cidr"] == "fd00:10:244::/56,10.244.0.0/16"
    assert (dual["node-cidr-mask-size-ipv6"], dual["node-cidr-mask-size-ipv4"]) == ("64", "24")


def test_etcd_is_on_loopback_without_fsync() -> None:
    argv = components.etcd(BIN, STATE / "etcd", "http://127.0.0.1:2379", 2380)
    got = flags(argv)
    assert got["listen-client-urls"] == "http://127.0.0.1:2379"
    assert got["initial-cluster"] == "local=http://127.0.0.1:2380"
    assert "--unsafe-no-fsync" in argv


def test_the_pod_network_has_a_range_and_a_default_route_per_family() -> None:
    conf = cni.conflist(["10.244.0.0/24", "fd00:10:244::/64"], STATE / "ipam")
    bridge = conf["plugins"][0]
    assert bridge["ipam"]["ranges"] == [
        [{"subnet": "10.244.0.0/24"}],
        [{"subnet": "fd00:10:244::/64"}],
    ]
    assert bridge["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_the_kubelet_tolerates_this_machine() -> None:
    config = kubelet.kubelet_config(STATE / "node", STATE / "pki", STATE / "c.sock", 1, 2)
    assert config["failCgroupV1"] is False
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["evictionHard"]["nodefs.available"] == "1%"


# --- the audit log ----------------------------------------------------------------------


def event(verb: str, resource: str, name: str, code: int = 200, **more: Any) -> dict[str, Any]:
    ref = {"resource": resource, "namespace": "shop", "name": name, **more.pop("ref", {})}
    return {
        "stage": "ResponseComplete",
        "user": {"username": more.pop("user", "dualstack-operator")},
        "verb": verb,
        "objectRef": ref,
        "requestURI": more.pop("uri", f"/api/v1/namespaces/shop/{resource}/{name}"),
        "requestReceivedTimestamp": more.pop("at", "2026-12-01T10:00:00.000000Z"),
        "responseStatus": {"code": code},
    }


def test_the_audit_log_counts_what_the_server_accepted_from_the_operator(tmp_path: Path) -> None:
    lines = [
        event("patch", "services", "web"),
        event("patch", "services", "web", code=409),
        event("patch", "services", "web", user="admin"),
        event("create", "services", "probe", uri="/api/v1/namespaces/shop/services?dryRun=All"),
        event("patch", "dualstackpolicies", "p", ref={"subresource": "status"}),
        event("create", "dualstackadmissions", "dualstack-admission"),
        {**event("patch", "services", "web"), "stage": "RequestReceived"},
    ]
    path = tmp_path / "audit.log"
    path.write_text("\n".join(json.dumps(e) for e in lines) + "\nnot json\n")
    log = AuditLog(path)
    assert log.writes("shop") == {
        ("services", "web", "patch"): 1,
        ("dualstackpolicies/status", "p", "patch"): 1,
        ("dualstackadmissions", "dualstack-admission", "create"): 1,
    }
    assert service_patches(log.writes("shop")) == {"web": 1}
    assert log.attempts("shop", "web") == [200, 409]
    assert log.parameter_writes("shop") == {"create": 1}
    services, statuses = log.by_object("sh")
    assert (services, statuses) == ({"shop/web": 1}, {"shop/p": 1})


def test_audit_policy_logs_reads_only_when_asked() -> None:
    assert len(audit_policy()["rules"]) == 2
    rules = audit_policy(reads=True)["rules"]
    assert rules[1] == {"level": "Metadata", "users": OPERATOR_USERS}
    assert rules[-1] == {"level": "None"}, "nobody else is logged"


# --- the supervisor ---------------------------------------------------------------------


def test_the_supervisor_records_stops_and_keeps_the_exit_code(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    ready = tmp_path / "ready"
    script = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    child = supervisor.start("sleeper", [sys.executable, "-c", script])
    assert [e["name"] for e in json.loads((tmp_path / "pids.json").read_text())] == ["sleeper"]
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "the child never got ready"
        time.sleep(0.01)
    assert child.stop(grace=10) == 3, "the child's own exit code"
    supervisor.stop("sleeper")
    assert json.loads((tmp_path / "pids.json").read_text()) == []


@pytest.mark.parametrize("families", [("ipv4", "ipv6"), ("ipv6", "ipv4"), ("ipv4",)])
def test_pods_are_given_kube_dns_and_kube_dns_has_every_family(
    families: tuple[Family, ...], tmp_path: Path
) -> None:
    topology = Topology(families, nodes=1)
    config = kubelet.kubelet_config(
        tmp_path, tmp_path, tmp_path / "s", 1, 2, topology.dns_addresses
    )
    (svc,) = [o for o in dns.objects(topology) if o["kind"] == "Service"]
    assert config["clusterDNS"] == svc["spec"]["clusterIPs"]
    assert svc["spec"]["ipFamilies"] == topology.api_families
    for ip, cidr in zip(svc["spec"]["clusterIPs"], topology.service_cidrs, strict=True):
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    assert svc["spec"]["ipFamilyPolicy"] == (
        "RequireDualStack" if len(families) == 2 else "SingleStack"
    )
