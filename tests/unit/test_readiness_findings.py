"""Readiness past a Service's family fields (core.readiness), from the objects' own
fields: each finding appears for one family only, and not for two or for none."""

from __future__ import annotations

from typing import Any

import pytest

from dualstack_operator.api.models import DriftReason
from dualstack_operator.core.decision import COMPLIANT, State
from dualstack_operator.core.plan import PolicyPlan
from dualstack_operator.core.readiness import (
    CLUSTER_DNS_SINGLE_STACK,
    Severity,
    check_dns,
    service_findings,
    with_readiness,
)
from dualstack_operator.core.views import NetworkPolicyView, ServiceView
from support.views import policy_view

DUAL = ("IPv4", "IPv6")


def svc(families: tuple[str, ...] = DUAL, status: Any = None, **spec: Any) -> ServiceView:
    body = {
        "metadata": {"namespace": "shop", "name": "web", "resourceVersion": "1"},
        "spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": list(families), **spec},
        "status": status or {},
    }
    return ServiceView.from_body(body)


def netpol(name: str, *rules: list[str], selector: Any = None, **spec: Any) -> NetworkPolicyView:
    """Ingress rules of ipBlocks ([] : a rule without `from`, which admits every source)."""
    ingress = [
        {"from": [{"ipBlock": {"cidr": c}} for c in cidrs]} if cidrs else {} for cidrs in rules
    ]
    body = {
        "metadata": {"namespace": "shop", "name": name},
        "spec": {"podSelector": selector or {}, "ingress": ingress, **spec},
    }
    return NetworkPolicyView.from_body(body)


def reasons(view: ServiceView, policies: list[NetworkPolicyView] | None = None) -> list[str]:
    return [str(f.reason) for f in service_findings(view, policies or [])]


def lb(*ips: str, hostname: bool = False) -> dict[str, Any]:
    ingress: list[dict[str, str]] = [{"ip": ip} for ip in ips]
    if hostname:
        ingress.append({"hostname": "lb.example.com"})
    return {"loadBalancer": {"ingress": ingress}}


def test_load_balancer_addresses_of_one_family() -> None:
    one = svc(type="LoadBalancer", status=lb("192.0.2.1"))
    (finding,) = service_findings(one, [])
    assert finding.reason == DriftReason.MISSING_LOAD_BALANCER_ADDRESS
    assert finding.severity == Severity.BLOCKING
    assert "no IPv6" in finding.message
    assert "IPAddressPool" in finding.message
    assert reasons(svc(type="LoadBalancer", status=lb("192.0.2.1", "2001:db8::1"))) == []
    assert reasons(svc(type="LoadBalancer")) == [], "no address assigned yet: nothing to say"
    assert reasons(svc(type="LoadBalancer", status=lb("192.0.2.1", hostname=True))) == []
    assert reasons(svc(("IPv4",), type="LoadBalancer", status=lb("192.0.2.1"))) == []


def test_source_ranges_and_external_ips_of_one_family() -> None:
    ranges = svc(type="LoadBalancer", loadBalancerSourceRanges=["10.0.0.0/8", "192.0.2.0/24"])
    assert reasons(ranges) == ["SourceRangesOneFamily"]
    both = svc(type="LoadBalancer", loadBalancerSourceRanges=["10.0.0.0/8", "2001:db8::/32"])
    assert reasons(both) == []
    annotation = {
        "service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8, 192.0.2.0/24"
    }
    annotated = ServiceView.from_body(
        {
            "metadata": {"name": "old-chart", "annotations": annotation},
            "spec": {"type": "LoadBalancer", "ipFamilies": list(DUAL)},
        }
    )
    assert reasons(annotated) == ["SourceRangesOneFamily"], "the annotation older charts set"
    assert reasons(svc(externalIPs=["198.51.100.7"])) == ["ExternalIPsOneFamily"]
    assert reasons(svc(externalIPs=["198.51.100.7", "2001:db8::7"])) == []
    assert reasons(svc(("IPv6",), externalIPs=["198.51.100.7"])) == [], "single-stack"


def test_network_policies_selecting_the_pods_with_one_family_blocks() -> None:
    web = svc(selector={"app": "web", "tier": "front"})
    allow = netpol("allow-world", ["0.0.0.0/0"], selector={"matchLabels": {"app": "web"}})
    (finding,) = service_findings(web, [allow])
    assert finding.reason == DriftReason.NETWORK_POLICY_ONE_FAMILY
    assert "NetworkPolicy allow-world" in finding.message
    assert "rule 0" in finding.message
    assert "::/0" in finding.message
    fixed = netpol("allow-world", ["0.0.0.0/0", "::/0"], selector={"matchLabels": {"app": "web"}})
    assert reasons(web, [fixed]) == []
    other = netpol("db", ["10.0.0.0/8"], selector={"matchLabels": {"app": "db"}})
    assert reasons(web, [other]) == [], "selects other pods"
    egress = netpol("out", ["10.0.0.0/8"], policyTypes=["Egress"])
    assert reasons(web, [egress]) == [], "an egress-only policy does not guard the Service"
    assert reasons(svc(), [allow]) == [], "a Service without a selector has no known pods"
    everyone = netpol("all-pods", ["2001:db8::/32", "fd00::/8"], ["10.0.0.0/8"])
    assert reasons(web, [everyone]) == [], "rule 0 admits IPv6: the rules add up"
    v4 = netpol("all-pods", ["10.0.0.0/8"])  # an empty podSelector: every pod
    v6 = netpol("v6", ["fd00::/8"], selector={"matchLabels": {"app": "web"}})
    assert reasons(web, [v4, v6]) == [], "and so do the policies selecting the pods"
    assert reasons(web, [v4, netpol("any", [])]) == [], "a rule without from admits all"
    maybe = {"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}
    assert reasons(web, [netpol("maybe", selector=maybe)]) == [], "cannot tell: not said"
    assert reasons(web, [v4, netpol("maybe", ["fd00::/8"], selector=maybe)]) == []
    assert reasons(web, [v4, netpol("maybe", ["10.1.0.0/16"], selector=maybe)]) == [
        "NetworkPolicyOneFamily"
    ]
    empty_types = netpol("typed", ["10.0.0.0/8"], policyTypes=[])
    assert reasons(web, [empty_types]) == ["NetworkPolicyOneFamily"], "policyTypes [] is Ingress"


def test_only_compliant_dual_stack_services_get_a_finding_as_drift() -> None:
    policy = policy_view("default", "shop", ipFamilyPolicy="RequireDualStack")
    web = svc(externalIPs=["198.51.100.7"], type="LoadBalancer", status=lb("192.0.2.1"))
    services = {"web": web}
    (plan,) = with_readiness([PolicyPlan(policy, {"web": COMPLIANT})], services, None)
    decision = plan.decisions["web"]
    assert decision.state == State.DRIFTED
    assert decision.reason == DriftReason.MISSING_LOAD_BALANCER_ADDRESS
    assert decision.patch is None, "never fixed by writing the Service"
    assert decision.message.endswith("also ExternalIPsOneFamily")


@pytest.mark.parametrize(
    ("dns", "cluster", "finding"),
    [
        (("IPv4",), DUAL, True),
        (DUAL, DUAL, False),
        (("IPv4",), ("IPv4",), None),  # single-stack cluster: nothing to say
    ],
)
def test_cluster_dns(dns: tuple[str, ...], cluster: tuple[str, ...], finding: bool | None) -> None:
    view = ServiceView.from_body(
        {"metadata": {"namespace": "kube-system", "name": "kube-dns"}, "spec": {"ipFamilies": dns}}
    )
    checked = check_dns(view, cluster)
    if finding is None:
        assert checked is None
        return
    assert checked is not None
    assert (checked.finding is not None) == finding
    if checked.finding is not None:
        assert checked.finding.reason == CLUSTER_DNS_SINGLE_STACK
        assert checked.finding.severity == Severity.ADVISORY
        assert "IPv6-only clients cannot resolve" in checked.finding.message
    assert check_dns(False, DUAL) is None, "not watched: not checked"
