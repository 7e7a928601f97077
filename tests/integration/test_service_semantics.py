"""Ground truth: how the real kube-apiserver treats Service IP families.

Each test pins one rule of ``shared/design/dualstack-semantics.md`` against the
real server. The operator's decision logic is built on these facts; if a test
here fails after a Kubernetes upgrade, the rules (and the operator) must change.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from support.kube import Kubectl, service

V4_CIDR = ipaddress.ip_network("10.96.0.0/16")
V6_CIDR = ipaddress.ip_network("fd00:10:96::/112")


def families(kubectl: Kubectl, name: str) -> tuple[str | None, list[str], list[str]]:
    spec = kubectl.get("service", name)["spec"]
    return spec.get("ipFamilyPolicy"), spec.get("ipFamilies", []), spec.get("clusterIPs", [])


def in_cidrs(ips: list[str]) -> list[str]:
    """Which service CIDR each IP was allocated from."""
    out = []
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        out.append("IPv4" if addr in V4_CIDR else "IPv6" if addr in V6_CIDR else f"?{ip}")
    return out


# --- defaulting on create (dual-stack cluster, IPv4 primary) -------------------------------


def test_prefer_dual_stack_gets_an_ip_of_each_family(dual: Kubectl) -> None:
    dual.create(service("web", selector={"app": "web"}, ipFamilyPolicy="PreferDualStack"))
    policy, fams, ips = families(dual, "web")
    assert (policy, fams) == ("PreferDualStack", ["IPv4", "IPv6"])
    assert in_cidrs(ips) == ["IPv4", "IPv6"]


def test_no_policy_defaults_to_single_stack_primary_family(dual: Kubectl) -> None:
    dual.create(service("plain", selector={"app": "plain"}))
    policy, fams, ips = families(dual, "plain")
    assert (policy, fams) == ("SingleStack", ["IPv4"])
    assert in_cidrs(ips) == ["IPv4"]


def test_headless_without_selector_defaults_to_require_dual_stack(dual: Kubectl) -> None:
    dual.create(service("headless", clusterIP="None"))
    policy, fams, ips = families(dual, "headless")
    assert (policy, fams, ips) == ("RequireDualStack", ["IPv4", "IPv6"], ["None"])


def test_headless_with_selector_defaults_like_a_normal_service(dual: Kubectl) -> None:
    dual.create(service("headless-sel", clusterIP="None", selector={"app": "db"}))
    policy, fams, ips = families(dual, "headless-sel")
    assert (policy, fams, ips) == ("SingleStack", ["IPv4"], ["None"])


def test_external_name_has_no_family_fields(dual: Kubectl) -> None:
    dual.create(service("ext", type="ExternalName", externalName="example.com"))
    assert families(dual, "ext") == (None, [], [])


def test_switching_to_external_name_wipes_family_fields(dual: Kubectl) -> None:
    dual.create(service("was-ip", selector={"app": "x"}, ipFamilyPolicy="PreferDualStack"))
    dual.patch(
        "service",
        "was-ip",
        {
            "spec": {
                "type": "ExternalName",
                "externalName": "example.com",
                "clusterIP": None,
                "clusterIPs": None,
                "selector": None,
                "ports": None,
            }
        },
    )
    assert families(dual, "was-ip") == (None, [], [])


@pytest.mark.parametrize("svc_type", ["NodePort", "LoadBalancer"])
def test_node_port_and_load_balancer_allocate_like_cluster_ip(dual: Kubectl, svc_type: str) -> None:
    dual.create(
        service("lb", type=svc_type, selector={"app": "lb"}, ipFamilyPolicy="PreferDualStack")
    )
    policy, fams, ips = families(dual, "lb")
    assert (policy, fams) == ("PreferDualStack", ["IPv4", "IPv6"])
    assert in_cidrs(ips) == ["IPv4", "IPv6"]


@pytest.mark.parametrize("policy", [None, "SingleStack"])
def test_two_families_need_a_dual_stack_policy(dual: Kubectl, policy: str | None) -> None:
    spec: dict[str, object] = {"selector": {"app": "x"}, "ipFamilies": ["IPv4", "IPv6"]}
    if policy:
        spec["ipFamilyPolicy"] = policy
    err = dual.fails("create", "-f", "-", stdin=json.dumps(service("two", **spec)))
    assert (
        "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"
        in err
    )


def test_ipv6_primary_cluster_defaults_to_ipv6(ipv6first: Kubectl) -> None:
    ipv6first.create(service("v6", selector={"app": "v6"}))
    policy, fams, ips = families(ipv6first, "v6")
    assert (policy, fams) == ("SingleStack", ["IPv6"])
    assert in_cidrs(ips) == ["IPv6"]


# --- allowed updates ------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["PreferDualStack", "RequireDualStack"])
def test_single_to_dual_by_policy_appends_the_missing_family(dual: Kubectl, target: str) -> None:
    dual.create(service("up", selector={"app": "up"}))
    before = families(dual, "up")[2]
    dual.patch("service", "up", {"spec": {"ipFamilyPolicy": target}})
    policy, fams, ips = families(dual, "up")
    assert (policy, fams) == (target, ["IPv4", "IPv6"])
    assert ips[0] == before[0], "the primary ClusterIP is kept"
    assert in_cidrs(ips) == ["IPv4", "IPv6"]


def test_single_to_dual_sending_both_families_is_accepted(dual: Kubectl) -> None:
    dual.create(service("both", selector={"app": "both"}))
    dual.patch(
        "service",
        "both",
        {"spec": {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]}},
    )
    assert families(dual, "both")[1] == ["IPv4", "IPv6"]


def test_dual_to_single_trims_to_the_primary(dual: Kubectl) -> None:
    dual.create(service("down", selector={"app": "d"}, ipFamilyPolicy="RequireDualStack"))
    primary_ip = families(dual, "down")[2][0]
    dual.patch("service", "down", {"spec": {"ipFamilyPolicy": "SingleStack"}})
    assert families(dual, "down") == ("SingleStack", ["IPv4"], [primary_ip])


@pytest.mark.parametrize(
    ("field", "message"),
    [
        # The page said "secondary cluster IP" for both; v1.36 words the two differently.
        ("ipFamilies", "must be 'SingleStack' to release the secondary IP family"),
        ("clusterIPs", "must be 'SingleStack' to release the secondary cluster IP"),
    ],
)
def test_shrinking_under_a_dual_policy_is_refused(dual: Kubectl, field: str, message: str) -> None:
    dual.create(service("shrink", selector={"app": "s"}, ipFamilyPolicy="PreferDualStack"))
    spec = dual.get("service", "shrink")["spec"]
    err = dual.fails(
        "patch",
        "service",
        "shrink",
        "--type=merge",
        "-p",
        json.dumps({"spec": {field: spec[field][:1]}}),
    )
    assert message in err
    assert families(dual, "shrink")[1] == ["IPv4", "IPv6"]


@pytest.mark.parametrize("policy", ["SingleStack", "PreferDualStack"])
def test_reordering_families_alone_is_refused(dual: Kubectl, policy: str) -> None:
    """Asking for IPv6 first on an IPv4-first Service: the kept IPv4 ClusterIP contradicts it.

    The semantics page quotes "may not change once set"; v1.36 refuses this shape
    earlier, checking the existing clusterIPs against the new ipFamilies.
    """
    dual.create(service("fixed", selector={"app": "f"}))
    err = dual.fails(
        "patch",
        "service",
        "fixed",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "ipFamilyPolicy": policy,
                    "ipFamilies": ["IPv6", "IPv4"][: 1 if policy == "SingleStack" else 2],
                }
            }
        ),
    )
    assert "spec.clusterIPs[0]: Invalid value" in err
    assert "expected an IPv6 value as indicated by `ipFamilies[0]`" in err
    assert families(dual, "fixed")[:2] == ("SingleStack", ["IPv4"])


def test_primary_family_and_cluster_ip_may_not_change_once_set(dual: Kubectl) -> None:
    dual.create(service("ipfixed", selector={"app": "f"}, ipFamilyPolicy="RequireDualStack"))
    _, _, ips = families(dual, "ipfixed")
    swapped = {"ipFamilies": ["IPv6", "IPv4"], "clusterIPs": ips[::-1], "clusterIP": ips[1]}
    err = dual.fails(
        "patch", "service", "ipfixed", "--type=merge", "-p", json.dumps({"spec": swapped})
    )
    assert "spec.ipFamilies[0]: Invalid value" in err
    assert "spec.clusterIPs[0]: Invalid value" in err
    assert err.count("may not change once set") >= 2
    assert families(dual, "ipfixed")[2] == ips


def test_headless_service_may_change_families_in_place(dual: Kubectl) -> None:
    dual.create(service("hl", clusterIP="None", selector={"app": "hl"}))
    assert families(dual, "hl")[1] == ["IPv4"]
    dual.patch("service", "hl", {"spec": {"ipFamilies": ["IPv6"]}})
    assert families(dual, "hl") == ("SingleStack", ["IPv6"], ["None"])
    dual.patch(
        "service",
        "hl",
        {"spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}},
    )
    assert families(dual, "hl") == ("RequireDualStack", ["IPv4", "IPv6"], ["None"])


def test_resending_prefer_dual_stack_is_a_no_op(dual: Kubectl) -> None:
    dual.create(service("same", selector={"app": "same"}, ipFamilyPolicy="PreferDualStack"))
    before = dual.get("service", "same")
    after = dual.patch("service", "same", {"spec": {"ipFamilyPolicy": "PreferDualStack"}})
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["clusterIPs"] == before["spec"]["clusterIPs"]


# --- single-stack clusters ------------------------------------------------------------------


def test_require_dual_stack_is_refused_on_a_single_stack_cluster(single: Kubectl) -> None:
    err = single.fails(
        "create",
        "-f",
        "-",
        stdin=json.dumps(service("req", selector={"app": "r"}, ipFamilyPolicy="RequireDualStack")),
    )
    assert (
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": '
        "this cluster is not configured for dual-stack services" in err
    )


def test_prefer_dual_stack_gets_one_family_on_a_single_stack_cluster(single: Kubectl) -> None:
    single.create(service("pref", selector={"app": "p"}, ipFamilyPolicy="PreferDualStack"))
    policy, fams, ips = families(single, "pref")
    assert (policy, fams) == ("PreferDualStack", ["IPv4"])
    assert in_cidrs(ips) == ["IPv4"]


def test_resending_prefer_dual_stack_does_not_upgrade_on_a_single_stack_cluster(
    single: Kubectl,
) -> None:
    single.create(service("stay", selector={"app": "p"}, ipFamilyPolicy="PreferDualStack"))
    before = single.get("service", "stay")
    after = single.patch("service", "stay", {"spec": {"ipFamilyPolicy": "PreferDualStack"}})
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["ipFamilies"] == ["IPv4"]


@pytest.mark.parametrize(
    ("fams", "index"),
    [(["IPv4", "IPv6"], 1), (["IPv6"], 0)],
)
def test_a_family_the_cluster_lacks_is_refused(
    single: Kubectl, fams: list[str], index: int
) -> None:
    policy = "PreferDualStack" if len(fams) == 2 else "SingleStack"
    err = single.fails(
        "create",
        "-f",
        "-",
        stdin=json.dumps(
            service("lacks", selector={"app": "l"}, ipFamilyPolicy=policy, ipFamilies=fams)
        ),
    )
    assert f'spec.ipFamilies[{index}]: Invalid value: "IPv6": not configured on this cluster' in err
