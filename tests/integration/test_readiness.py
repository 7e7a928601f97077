"""Readiness past the Service's fields, against the real API server: source ranges,
external IPs and NetworkPolicies of one family are reported as drift (once as an Event,
in status, in the metric), nothing is written to the Service, and each clears once its
cause is fixed; the cluster DNS Service of one family is the ClusterDNS condition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localcluster import LocalCluster
from localcluster.audit import service_patches
from localcluster.metallb import NAMESPACE as METALLB_NAMESPACE
from localcluster.metallb import MetalLB
from support.kube import Kubectl, dsp, service, status_when, wait_for
from support.operator_proc import OperatorProcess

StartOperator = Callable[..., OperatorProcess]


def network_policy(name: str, app: str, *cidrs: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "podSelector": {"matchLabels": {"app": app}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {}}]},
                {"from": [{"ipBlock": {"cidr": c}} for c in cidrs]},
            ],
        },
    }


def events(k: Kubectl, name: str, reason: str) -> list[dict[str, Any]]:
    got = k.get("events", "", f"--field-selector=involvedObject.name={name},reason={reason}")
    return list(got["items"])


def test_entry_points_of_one_family_are_reported_once_and_clear_when_fixed(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    ns = dual.namespace or ""
    dual.create(
        service(
            "ranges",
            type="LoadBalancer",
            ipFamilyPolicy="RequireDualStack",
            loadBalancerSourceRanges=["10.0.0.0/8"],
        )
    )
    dual.create(service("external", ipFamilyPolicy="RequireDualStack", externalIPs=["192.0.2.50"]))
    dual.create(service("web", ipFamilyPolicy="RequireDualStack", selector={"app": "web"}))
    dual.create(service("fine", ipFamilyPolicy="RequireDualStack", selector={"app": "other"}))
    dual.create(network_policy("allow-lb", "web", "0.0.0.0/0"))
    operator = start_operator(dual_cluster, dual, "--resync-seconds=2")
    dual.create(dsp(ipFamilyPolicy="RequireDualStack"))

    status = status_when(dual, lambda s: s.get("driftedServices") == 3)
    drift = {d["service"]: d for d in status["drift"]}
    assert {name: d["reason"] for name, d in drift.items()} == {
        "ranges": "SourceRangesOneFamily",
        "external": "ExternalIPsOneFamily",
        "web": "NetworkPolicyOneFamily",
    }
    assert "NetworkPolicy allow-lb" in drift["web"]["message"]
    assert "ingress rule 1" in drift["web"]["message"]
    assert "IPv6 clients are refused" in drift["ranges"]["message"]
    assert status["compliantServices"] == 1
    labels = f'namespace="{ns}",policy="default",reason="NetworkPolicyOneFamily"'
    metric = f"dualstack_service_drift{{{labels}}}"
    wait_for("the drift metric", lambda: f"{metric} 1.0" in operator.scrape())
    said = (("ranges", "SourceRangesOneFamily"), ("web", "NetworkPolicyOneFamily"))
    wait_for("the events", lambda: all(events(dual, n, r) for n, r in said))

    # The causes are fixed where they are: the Service's owner, the NetworkPolicy.
    dual.patch(
        "service", "ranges", {"spec": {"loadBalancerSourceRanges": ["10.0.0.0/8", "fd00::/8"]}}
    )
    dual.patch("service", "external", {"spec": {"externalIPs": ["192.0.2.50", "2001:db8::50"]}})
    dual.patch(
        "networkpolicy",
        "allow-lb",
        {"spec": network_policy("allow-lb", "web", "0.0.0.0/0", "::/0")["spec"]},
    )
    status_when(dual, lambda s: s.get("compliantServices") == 4 and not s.get("drift"))
    wait_for("the metric to clear", lambda: f"{metric} 0.0" in operator.scrape())
    # Several passes saw the findings (the first, then each write and event after it):
    # each finding was said once.
    for name, reason in (*said, ("external", "ExternalIPsOneFamily")):
        (event,) = events(dual, name, reason)
        assert event["type"] == "Warning"
    assert not service_patches(dual_cluster.audit.writes(ns)), "no Service was written"


def kube_dns(**spec: Any) -> dict[str, Any]:
    body = service("kube-dns", **spec)
    body["metadata"]["namespace"] = "kube-system"
    return body


def test_a_single_stack_cluster_dns_is_the_cluster_dns_condition(
    dual: Kubectl, dual_cluster: LocalCluster, tmp_path: Any
) -> None:
    """The operator watches kube-system too: kube-dns of one family on a dual-stack cluster
    sets ClusterDNS False (advisory, not drift), and True once it is made dual-stack."""
    ns = dual.namespace or ""
    admin = dual.in_namespace("kube-system")
    assert admin.find("service", "kube-dns") is None, "the shared test cluster has no kube-dns"
    admin.create(kube_dns(ipFamilyPolicy="SingleStack", ipFamilies=["IPv4"]))
    operator = OperatorProcess(
        dual_cluster.operator_kubeconfig, [ns, "kube-system"], tmp_path / "op.log", ()
    )
    try:
        operator.start()
        dual.create(service("web", ipFamilyPolicy="RequireDualStack"))
        dual.create(dsp(ipFamilyPolicy="RequireDualStack"))

        def dns_condition(s: dict[str, Any]) -> dict[str, Any] | None:
            return next((c for c in s.get("conditions") or [] if c["type"] == "ClusterDNS"), None)

        status = status_when(dual, lambda s: (dns_condition(s) or {}).get("status") == "False")
        cond = dns_condition(status)
        assert cond is not None
        assert cond["reason"] == "ClusterDNSSingleStack"
        assert "IPv6-only clients cannot resolve names" in cond["message"]
        assert status["driftedServices"] == 0, "advisory: not a Service's drift"
        gauge = 'dualstack_cluster_dns_ip_families{family="IPv6"}'
        wait_for("the DNS gauge", lambda: f"{gauge} 0.0" in operator.scrape())
        # One Event, on the DNS Service (not one per policy).
        wait_for("the event", lambda: events(admin, "kube-dns", "ClusterDNSSingleStack"))
        assert not events(dual, "default", "ClusterDNSSingleStack")

        admin.patch("service", "kube-dns", {"spec": {"ipFamilyPolicy": "PreferDualStack"}})
        status = status_when(dual, lambda s: (dns_condition(s) or {}).get("status") == "True")
        assert "serves IPv4, IPv6" in (dns_condition(status) or {})["message"]
        wait_for("the DNS gauge", lambda: f"{gauge} 1.0" in operator.scrape())
        wait_for("the Normal event", lambda: events(admin, "kube-dns", "ClusterDNSDualStack"))
    finally:
        operator.stop()
        admin.run("delete", "service", "kube-dns", "--ignore-not-found")


LB_CLASS = "dualstack.dev/metallb-test"  # MetalLB serves only this test's Services


def test_a_load_balancer_of_one_family_is_reported_until_a_dual_pool_serves_it(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """A real MetalLB controller allocates from two IPAddressPools: an IPv4-only one
    (assigned automatically) and a dual one (asked for by name). A PreferDualStack
    LoadBalancer from the first gets one IPv4 address: MissingLoadBalancerAddress. One
    from the dual pool gets both: compliant. Once the first pool has an IPv6 range,
    MetalLB adds that family and the finding clears."""
    ns = dual.namespace or ""
    metallb = MetalLB.of(dual_cluster, lb_class=LB_CLASS)
    v4, both = f"v4-{ns}"[:63], f"dual-{ns}"[:63]
    try:
        metallb.start()
        metallb.apply_pool(v4, ["192.0.2.64/28"])
        metallb.apply_pool(both, ["198.51.100.64/28", "2001:db8:65::/124"], auto_assign=False)
        lb = {
            "type": "LoadBalancer",
            "loadBalancerClass": LB_CLASS,
            "ipFamilyPolicy": "PreferDualStack",
            "ipFamilies": ["IPv4", "IPv6"],
        }
        dual.create(service("shop", **lb))
        cart = service("cart", **lb)
        cart["metadata"]["annotations"] = {"metallb.io/address-pool": both}
        dual.create(cart)
        wait_for("an IPv4 address", lambda: metallb.ingress(ns, "shop"))
        wait_for("two addresses", lambda: len(metallb.ingress(ns, "cart")) == 2)
        operator = start_operator(dual_cluster, dual, "--resync-seconds=2")
        dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
        status = status_when(dual, lambda s: s.get("driftedServices") == 1)
        (entry,) = status["drift"]
        assert entry["service"] == "shop"
        assert entry["reason"] == "MissingLoadBalancerAddress"
        assert "no IPv6 one" in entry["message"]
        assert "IPAddressPool" in entry["message"]
        assert status["compliantServices"] == 1, "cart, from the dual pool"
        wait_for("the event", lambda: events(dual, "shop", "MissingLoadBalancerAddress"))

        metallb.apply_pool(v4, ["192.0.2.64/28", "2001:db8:64::/124"])
        status_when(dual, lambda s: s.get("compliantServices") == 2 and not s.get("drift"))
        got = {":" in ip for ip in metallb.ingress(ns, "shop")}
        assert got == {False, True}, "MetalLB gave it an IPv6 address as well"
        assert not service_patches(dual_cluster.audit.writes(ns)), "no Service was written"
        labels = f'namespace="{ns}",policy="default",reason="MissingLoadBalancerAddress"'
        wait_for(
            "the metric", lambda: f"dualstack_service_drift{{{labels}}} 0.0" in operator.scrape()
        )
    finally:
        metallb.stop()
        admin = dual.in_namespace(METALLB_NAMESPACE)
        admin.run("delete", "ipaddresspool", v4, both, "--ignore-not-found")
