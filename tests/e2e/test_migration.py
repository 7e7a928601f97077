"""Making IPv6 primary on a live node, under traffic: primaryFamilyChange: Recreate keeps
the IPv4 ClusterIP clients know, and the window in which it refuses them is measured."""

from __future__ import annotations

from collections.abc import Callable

from localcluster import LocalCluster
from support.kube import Kubectl, dsp, service, wait_for
from support.operator_proc import OperatorProcess
from support.traffic import Prober, answers, echo_pod, ready_pods

StartOperator = Callable[..., OperatorProcess]


def test_recreate_under_traffic_keeps_the_ipv4_address_and_measures_the_gap(
    node_cluster: LocalCluster, noded: Kubectl, start_operator: StartOperator
) -> None:
    for name in ("echo-a", "echo-b"):
        noded.create(echo_pod(name))
    ready_pods(noded, "echo", 2)
    ports = [{"port": 80, "targetPort": 8080}]
    old = noded.create(service("web", selector={"app": "echo"}, ports=ports))
    ipv4 = old["spec"]["clusterIP"]
    assert old["spec"]["ipFamilies"] == ["IPv4"]
    answers(ipv4)

    start_operator(node_cluster, noded, f"--journal-namespace={noded.namespace}")
    prober = Prober(ipv4)
    prober.start()
    try:
        wait_for("traffic flowing", lambda: prober.ok_since(50))
        noded.create(
            dsp(
                ipFamilyPolicy="RequireDualStack",
                ipFamilies=["IPv6", "IPv4"],
                primaryFamilyChange="Recreate",
            )
        )
        new = wait_for(
            "web recreated IPv6 primary",
            lambda: (lambda s: s if s["metadata"]["uid"] != old["metadata"]["uid"] else None)(
                noded.get("service", "web")
            ),
            timeout=60,
        )
        # Served again, and then for two seconds more (200 requests) without a failure.
        wait_for("traffic back on the kept address", lambda: prober.ok_since(200), timeout=60)
    finally:
        prober.stop()
    ipv6, kept = new["spec"]["clusterIPs"]
    assert kept == ipv4, "the IPv4 ClusterIP is kept"
    assert ":" in ipv6
    gap_ms, failed, after = prober.gap()
    assert after == 0, "no failure once the Service is served again"
    assert answers(ipv6) == {"echo-a", "echo-b"}, "the new IPv6 ClusterIP serves"
    assert answers(ipv4) == {"echo-a", "echo-b"}, "and so does the kept IPv4 one"
    print(
        f"MIGRATION-GAP kept {ipv4}, new {ipv6}: longest run of failed requests "
        f"{gap_ms:.0f} ms ({failed} requests of {len(prober.results)}, one every 10 ms, "
        f"{prober.timeout * 1000:.0f} ms timeout), {after} failures after it"
    )
