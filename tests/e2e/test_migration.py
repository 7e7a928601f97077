"""Making IPv6 primary on a live node, under traffic: primaryFamilyChange: Recreate keeps
the IPv4 ClusterIP clients know, and the window in which it refuses them is measured,
by address and by name (through the node cluster's CoreDNS)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import LocalCluster
from support.kube import Kubectl, KubectlError, dsp, service, status_when, wait_for
from support.operator_proc import OperatorProcess
from support.traffic import Prober, answers, echo_pod, lookup, ready_pods, service_name

StartOperator = Callable[..., OperatorProcess]
StartTraffic = Callable[..., Prober]


@pytest.fixture
def traffic() -> Iterator[StartTraffic]:
    """Starts probers; every one is stopped at teardown, whatever the test did."""
    started: list[Prober] = []

    def start(ip: str, **options: Any) -> Prober:
        prober = Prober(ip, **options)
        prober.start()
        started.append(prober)
        return prober

    yield start
    for prober in started:
        prober.stop()


def test_recreate_under_traffic_keeps_the_ipv4_address_and_measures_the_gap(
    node_cluster: LocalCluster, noded: Kubectl, start_operator: StartOperator, traffic: StartTraffic
) -> None:
    for name in ("echo-a", "echo-b"):
        noded.create(echo_pod(name))
    ready_pods(noded, "echo", 2)
    ports = [{"port": 80, "targetPort": 8080}]
    old = noded.create(service("web", selector={"app": "echo"}, ports=ports))
    ipv4 = old["spec"]["clusterIP"]
    assert old["spec"]["ipFamilies"] == ["IPv4"]
    answers(ipv4)

    server = node_cluster.topology.dns_addresses[0]
    name = service_name("web", noded.namespace or "")
    wait_for("web in DNS", lambda: lookup(name, "A", server) == [ipv4])

    start_operator(node_cluster, noded, f"--journal-namespace={noded.namespace}")
    with both_paths(traffic, ipv4, name, server) as probers:
        noded.create(
            dsp(
                ipFamilyPolicy="RequireDualStack",
                ipFamilies=["IPv6", "IPv4"],
                primaryFamilyChange="Recreate",
            )
        )
        new = wait_for("web recreated IPv6 primary", lambda: recreated(noded, old), timeout=60)
    ipv6, kept = new["spec"]["clusterIPs"]
    assert kept == ipv4, "the IPv4 ClusterIP is kept"
    assert ":" in ipv6
    assert answers(ipv6) == {"echo-a", "echo-b"}, "the new IPv6 ClusterIP serves"
    assert answers(ipv4) == {"echo-a", "echo-b"}, "and so does the kept IPv4 one"
    assert lookup(name, "A", server) == [ipv4]
    assert lookup(name, "AAAA", server) == [ipv6]
    figures = []
    for path, each in probers.items():
        gap_ms, failed, after = each.gap()
        assert after == 0, f"{path}: no failure once the Service is served again"
        figures.append(
            f"{path}: {gap_ms:.0f} ms, {failed} of {len(each.results)} requests failed, "
            f"{after} after"
        )
    print(
        f"MIGRATION-GAP kept {ipv4}, new {ipv6}; longest run of failures by "
        + "; by ".join(figures)
    )


@contextlib.contextmanager
def both_paths(
    traffic: StartTraffic, ip: str, name: str, server: str
) -> Iterator[dict[str, Prober]]:
    """Probers of ``ip`` by address and by ``name`` (looked up at ``server`` for each
    request), flowing before the body runs; after it, served again and then for two
    seconds more (200 requests) without a failure; stopped either way."""
    probers = {
        "address": traffic(ip),
        "name": traffic(ip, resolve=lambda: lookup(name, "A", server, timeout=1.0)),
    }
    try:
        wait_for("traffic flowing", lambda: all(p.ok_since(50) for p in probers.values()))
        yield probers
        wait_for(
            "traffic back on the kept address",
            lambda: all(p.ok_since(200) for p in probers.values()),
            timeout=60,
        )
    finally:
        for each in probers.values():
            each.stop()


def recreated(k: Kubectl, old: dict[str, Any]) -> dict[str, Any] | None:
    """The Service of ``old``'s name once it is a new one (absent between delete and create)."""
    svc = k.find("service", old["metadata"]["name"])
    return svc if svc and svc["metadata"]["uid"] != old["metadata"]["uid"] else None


def has(name: str, rdtype: str, server: str, wanted: list[str]) -> bool:
    return lookup(name, rdtype, server) == wanted


def test_cluster_dns_answers_both_families_for_dual_stack_services(
    node_cluster: LocalCluster, noded: Kubectl
) -> None:
    """kube-dns itself is dual-stack, and a dual-stack Service has an A and an AAAA record;
    a headless one, both families of its pods' addresses."""
    server = node_cluster.topology.dns_addresses
    kube_dns = noded.run("get", "service", "kube-dns", "-n", "kube-system", "-o",
                         "jsonpath={.spec.clusterIPs}")  # fmt: skip
    assert all(ip in kube_dns for ip in server)
    for pod in ("dns-a", "dns-b"):
        noded.create(echo_pod(pod, app="dns"))
    pods = ready_pods(noded, "dns", 2)
    ns = noded.namespace or ""
    noded.create(service("both", selector={"app": "dns"}, ipFamilyPolicy="RequireDualStack"))
    noded.create(
        service(
            "heads", selector={"app": "dns"}, clusterIP="None", ipFamilyPolicy="RequireDualStack"
        )
    )
    both = noded.get("service", "both")["spec"]["clusterIPs"]
    name = service_name("both", ns)
    for at in server:  # through each of kube-dns's ClusterIPs
        wait_for("both records", functools.partial(has, name, "A", at, [both[0]]))
        assert lookup(name, "AAAA", at) == [both[1]]
    ips = [a["ip"] for p in pods for a in p["status"]["podIPs"]]
    v4 = sorted(ip for ip in ips if ":" not in ip)
    v6 = sorted(ip for ip in ips if ":" in ip)
    heads = service_name("heads", ns)
    wait_for("the headless Service's A records", lambda: lookup(heads, "A", server[0]) == v4)
    assert lookup(heads, "AAAA", server[0]) == v6


def _deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    pod = echo_pod(name, app=name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": pod["metadata"], "spec": pod["spec"]},
        },
    }


def _plan(cluster: LocalCluster, policy: Path, namespace: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "dualstack_operator", "plan", "-n", namespace,
         "-f", str(policy), "-o", "json"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def _policy_file(tmp_path: Path, **spec: Any) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps({**dsp(**spec), "metadata": {"name": "default"}}))
    return path


def _both_families(pods: list[dict[str, Any]]) -> bool:
    return all(len(p["status"].get("podIPs") or []) == 2 for p in pods)


def test_the_whole_migration_of_a_live_cluster(
    single_node_cluster: LocalCluster,
    binaries: Path,
    start_operator: StartOperator,
    traffic: StartTraffic,
    tmp_path: Path,
) -> None:
    """Single-stack IPv4 with traffic; `plan` (blocked); the v1.33+ conversion; a
    PreferDualStack policy (upgraded, traffic on the IPv6 ClusterIPs once the pods
    restart); `plan` of RequireDualStack [IPv6, IPv4] (Recreate); applying it with
    primaryFamilyChange: Recreate (IPv6 primary, IPv4 kept, the gap measured by address
    and by name); every Service compliant and in DNS with both families."""
    cluster = single_node_cluster
    admin = Kubectl(binaries / "kubectl", cluster.kubeconfig)
    admin.run("create", "namespace", "shop")
    shop = admin.in_namespace("shop")
    shop.create(_deployment("web"))
    ports = [{"port": 80, "targetPort": 8080}]
    shop.create(service("web", selector={"app": "web"}, ports=ports))
    shop.create(service("checkout", selector={"app": "web"}, ports=ports, type="NodePort"))
    shop.create(service("db", selector={"app": "web"}, ports=ports, clusterIP="None"))
    ready_pods(shop, "web", 2)
    before = {n: shop.get("service", n) for n in ("web", "checkout")}
    ipv4 = {n: svc["spec"]["clusterIP"] for n, svc in before.items()}
    server = cluster.topology.dns_addresses[0]  # kube-dns's IPv4 address, kept throughout
    name = service_name("web", "shop")
    wait_for("web in DNS", lambda: lookup(name, "A", server) == [ipv4["web"]])
    through = traffic(ipv4["web"])  # the whole way, conversion and upgrade included

    # plan, before anything: the cluster lacks IPv6.
    target = {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}
    blocked = _plan(cluster, _policy_file(tmp_path, **target), "shop")
    verdicts = {s["service"]: s["verdict"] for s in blocked["services"]}
    assert verdicts["web"] == verdicts["checkout"] == "Blocked", verdicts
    assert blocked["cluster"]["dns"] == "kube-system/kube-dns: IPv4"

    # Watching kube-system too: the real CoreDNS's kube-dns is the ClusterDNS condition.
    start_operator(cluster, shop, "--journal-namespace=shop", "--namespace=kube-system")
    shop.create(dsp(ipFamilyPolicy="PreferDualStack"))
    status = status_when(shop, lambda s: s.get("compliantServices") == 3)
    assert "ClusterDNS" not in {c["type"] for c in status["conditions"]}, "single-stack"

    # The conversion, the v1.33+ way: the ServiceCIDR, the flags, the node.
    began = time.monotonic()
    upgraded: list[float] = []  # when web had both families, seen every 0.1 s

    def dual_at() -> float | None:
        with contextlib.suppress(KubectlError, KeyError, ValueError):  # (a restart)
            if len(shop.get("service", "web")["spec"]["ipFamilies"]) == 2:
                return time.monotonic()
        return None

    def watch_upgrade() -> None:
        upgraded.append(wait_for("web upgraded", dual_at, timeout=180, interval=0.1))

    watcher = threading.Thread(target=watch_upgrade, daemon=True)
    watcher.start()
    cluster.convert(("ipv4", "ipv6"))
    converted = time.monotonic()
    served = cluster.apiserver_ready_at  # the API server ready again, serving both families
    watcher.join(timeout=180)
    assert upgraded, "web upgraded to dual-stack"
    # The pods still have IPv4 only: the IPv6 ClusterIP would refuse, and says so.
    status = status_when(
        shop,
        lambda s: "MissingEndpoints" in {d["reason"] for d in s.get("drift") or []},
        timeout=60,
    )
    assert status["clusterIPFamilies"] == ["IPv4", "IPv6"]
    # Pods started after the conversion get both families: then IPv6 traffic flows.
    shop.run("rollout", "restart", "deployment/web")
    wait_for(
        "pods of both families",
        lambda: (lambda pods: pods if _both_families(pods) else None)(ready_pods(shop, "web", 2)),
        timeout=180,
    )
    status = status_when(shop, lambda s: s.get("compliantServices") == 3, timeout=60)
    dns = next(c for c in status["conditions"] if c["type"] == "ClusterDNS")
    assert (dns["status"], dns["reason"]) == ("True", "ClusterDNSDualStack"), dns
    dual = shop.get("service", "web")["spec"]["clusterIPs"]
    assert dual[0] == ipv4["web"]
    assert answers(dual[1]), "traffic reaches the IPv6 ClusterIP"
    wait_for("traffic after the conversion", lambda: through.ok_since(100), timeout=60)
    through.stop()
    conversion_gap, conversion_failed, _ = through.gap()

    # plan of IPv6 first: Recreate for the ClusterIP Services, a patch for the headless.
    recreate = _plan(cluster, _policy_file(tmp_path, **target), "shop")
    verdicts = {s["service"]: s["verdict"] for s in recreate["services"]}
    assert verdicts == {"web": "Recreate", "checkout": "Recreate", "db": "Patch"}, verdicts
    assert recreate["cluster"]["dns"] == "kube-system/kube-dns: IPv4, IPv6"

    with both_paths(traffic, ipv4["web"], name, server) as probers:
        shop.run(
            "patch", "dsp", "default", "--type=merge", "-p",
            json.dumps({"spec": {**target, "primaryFamilyChange": "Recreate"}}),
        )  # fmt: skip
        status_when(
            shop,
            lambda s: s.get("compliantServices") == 3 and s.get("driftedServices") == 0,
            timeout=120,
        )

    for n in ("web", "checkout"):
        spec = shop.get("service", n)["spec"]
        assert spec["ipFamilies"] == ["IPv6", "IPv4"], n
        assert spec["clusterIPs"][1] == ipv4[n], f"{n}: the IPv4 ClusterIP kept"
        assert answers(spec["clusterIPs"][0]), f"{n}: the IPv6 ClusterIP serves"
        fqdn = service_name(n, "shop")
        for at in cluster.topology.dns_addresses:  # kube-dns is dual-stack now
            # (within CoreDNS's cache of 5 s)
            wait_for(
                f"{n} A at {at}", functools.partial(has, fqdn, "A", at, [spec["clusterIPs"][1]])
            )
            wait_for(
                f"{n} AAAA at {at}",
                functools.partial(has, fqdn, "AAAA", at, [spec["clusterIPs"][0]]),
            )
    pods = ready_pods(shop, "web", 2)
    ips = [a["ip"] for p in pods for a in p["status"]["podIPs"]]
    db = service_name("db", "shop")
    v4 = sorted(ip for ip in ips if ":" not in ip)
    v6 = sorted(ip for ip in ips if ":" in ip)
    wait_for("db's A records", functools.partial(has, db, "A", server, v4))
    wait_for("db's AAAA records", functools.partial(has, db, "AAAA", server, v6))

    writes = cluster.audit.writes("shop")
    per_service = {
        n: sum(c for (res, svc, _), c in writes.items() if res == "services" and svc == n)
        for n in ("web", "checkout", "db")
    }
    gaps = []
    for path, each in probers.items():
        gap_ms, failed, after = each.gap()
        assert after == 0, f"{path}: no failure once the Service is served again"
        gaps.append(f"by {path} {gap_ms:.0f} ms ({failed} failed, {after} after)")
    print(
        f"MIGRATION conversion {converted - began:.1f}s (the API server's /readyz with IPv6 "
        f"{served - began:.1f}s in), web upgraded {upgraded[0] - began:.1f}s in; "
        "traffic through the conversion: longest "
        f"failure run {conversion_gap:.0f} ms ({conversion_failed} failed); recreation gap "
        + ", ".join(gaps)
        + f"; operator writes per Service {per_service}"
    )
