"""What else keeps a dual-stack Service from serving both of its families (pure).

A Service can match its policy field for field and still refuse clients of one family:
its LoadBalancer was given addresses of one family, its ``loadBalancerSourceRanges``
or ``externalIPs`` name one family, or a NetworkPolicy in front of its pods admits
ipBlocks of one family. Each is read from the objects' own fields and reported as a
drift reason (the policy's intent, both families served, is not met), never "fixed" by
changing the Service: the cause is in the load balancer, the NetworkPolicy, or a field
the Service's owner chose. The cluster's DNS Service is one finding for the whole
cluster (``cluster_dns``): a condition, not a Service's drift.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dualstack_operator.api.models import DriftReason
from dualstack_operator.api.reasons import ConditionReason
from dualstack_operator.core.decision import Decision, State, selects
from dualstack_operator.core.plan import PolicyPlan, override_compliant
from dualstack_operator.core.views import NetworkPolicyView, ServiceView


class Severity(StrEnum):
    """Blocking: clients of a family are refused at one of the Service's entry points;
    it counts as drift. Advisory: what works for dual-stack clients but not for clients
    of one family only; a condition, not drift."""

    BLOCKING = "blocking"
    ADVISORY = "advisory"


@dataclass(frozen=True)
class Finding:
    reason: DriftReason | ConditionReason  # the cluster DNS's: ClusterDNSSingleStack
    severity: Severity
    message: str


# The drift reasons readiness gives (each a Warning Event on the Service, once).
READINESS_REASONS = frozenset(
    {
        DriftReason.MISSING_LOAD_BALANCER_ADDRESS,
        DriftReason.SOURCE_RANGES_ONE_FAMILY,
        DriftReason.EXTERNAL_IPS_ONE_FAMILY,
        DriftReason.NETWORK_POLICY_ONE_FAMILY,
    }
)
CLUSTER_DNS_SINGLE_STACK = ConditionReason.CLUSTER_DNS_SINGLE_STACK
# What each finding needs to be read, for "not checked" when the right is missing.
NEEDS = {
    DriftReason.NETWORK_POLICY_ONE_FAMILY: "list networkpolicies",
    CLUSTER_DNS_SINGLE_STACK: "list services in kube-system",
}


def family_of(value: str) -> str | None:
    """IPv4 or IPv6 for an address or CIDR; None for what is neither."""
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None
    return "IPv6" if network.version == 6 else "IPv4"


def _only(values: Iterable[str], families: Sequence[str]) -> tuple[str, str] | None:
    """(the family named, the one missing) when ``values`` name one of the two only."""
    named = {f for f in map(family_of, values) if f is not None}
    if len(named) != 1:
        return None
    have = next(iter(named))
    missing = [f for f in families if f != have]
    return (have, missing[0]) if have in families and missing else None


def load_balancer(svc: ServiceView) -> Finding | None:
    """The load balancer assigned addresses, and none of one of the Service's families.
    A hostname-only entry (cloud LBs behind DNS) cannot be judged: nothing is said."""
    if svc.type != "LoadBalancer" or not svc.lb_ingress or "" in svc.lb_ingress:
        return None
    one = _only(svc.lb_ingress, svc.ip_families)
    if one is None:
        return None
    have, missing = one
    message = (
        f"the LoadBalancer has {have} addresses ({', '.join(svc.lb_ingress)}) and no {missing} "
        f"one: {missing} clients cannot reach it from outside. Give the load balancer an "
        f"{missing} pool or frontend (MetalLB: an IPAddressPool with an {missing} range; "
        "cloud LBs may need a dual-stack annotation); the Service itself is right"
    )
    return Finding(DriftReason.MISSING_LOAD_BALANCER_ADDRESS, Severity.BLOCKING, message)


def source_ranges(svc: ServiceView) -> Finding | None:
    one = _only(svc.source_ranges, svc.ip_families) if svc.source_ranges else None
    if one is None:
        return None
    have, missing = one
    message = (
        f"loadBalancerSourceRanges lists {have} ranges only: {missing} clients are refused, "
        "or let in unfiltered, depending on the load balancer. Add the "
        f"{missing} ranges that may connect (::/0 or 0.0.0.0/0 for everyone)"
    )
    return Finding(DriftReason.SOURCE_RANGES_ONE_FAMILY, Severity.BLOCKING, message)


def external_ips(svc: ServiceView) -> Finding | None:
    one = _only(svc.external_ips, svc.ip_families) if svc.external_ips else None
    if one is None:
        return None
    have, missing = one
    message = (
        f"externalIPs are {have} only ({', '.join(svc.external_ips)}): clients that reach the "
        f"Service at an external address cannot use {missing}. Add an {missing} external "
        "address routed to the nodes, or drop externalIPs (the API server warns that they "
        "are deprecated) if the ClusterIPs suffice"
    )
    return Finding(DriftReason.EXTERNAL_IPS_ONE_FAMILY, Severity.BLOCKING, message)


def applies_to(policy: NetworkPolicyView, svc: ServiceView) -> bool | None:
    """Whether the NetworkPolicy selects the Service's pods, known by the Service's
    selector: a podSelector of positive terms (matchLabels, In, Exists) that the
    selector's labels satisfy selects every pod of the Service (pods carry those labels
    at least); one that they do not, none. None: it cannot be told (NotIn and
    DoesNotExist depend on labels the pods may carry beyond the selector)."""
    selector = policy.pod_selector
    if not svc.selector or selector is None or not policy.ingress:
        return False
    if any(r.operator in NEGATIVE for r in selector.match_expressions or ()):
        return None
    return selects(selector, svc.selector)


NEGATIVE = frozenset({"NotIn", "DoesNotExist"})


@dataclass(frozen=True)
class OneFamilyRule:
    """An ingress rule whose ipBlocks are of one family."""

    policy: NetworkPolicyView
    index: int
    cidrs: tuple[str, ...]
    family: str


@dataclass(frozen=True)
class IngressPolicy:
    """A NetworkPolicy's ingress, summed up once per namespace: the families its ipBlocks
    name, whether a rule admits every source, and its first one-family rule."""

    policy: NetworkPolicyView
    families: frozenset[str]
    admits_all: bool
    first: OneFamilyRule | None


def ingress_policies(policies: Iterable[NetworkPolicyView]) -> list[IngressPolicy]:
    """The namespace's ingress policies, by name; empty when none names an ipBlock (then
    no Service of the namespace can have a finding, and none is looked at)."""
    out = []
    for policy in sorted(policies, key=lambda p: p.name):
        if not policy.ingress or policy.pod_selector is None:
            continue
        families: set[str] = set()
        first = None
        for index, cidrs in policy.rules:
            named = {f for f in map(family_of, cidrs) if f is not None}
            families |= named
            if first is None and len(named) == 1:
                first = OneFamilyRule(policy, index, cidrs, next(iter(named)))
        out.append(IngressPolicy(policy, frozenset(families), policy.admits_all, first))
    return out if any(p.families for p in out) else []


def network_policies(svc: ServiceView, policies: Sequence[IngressPolicy]) -> Finding | None:
    """NetworkPolicies add up: a source is admitted if any ingress rule of any policy
    selecting the pods admits it. So a finding is the union of them all naming ipBlocks
    of one family, with no rule admitting every source; a policy that may select the pods
    (a negative selector) can only take a finding away."""
    named: set[str] = set()
    first: OneFamilyRule | None = None
    for ingress in policies:
        applies = applies_to(ingress.policy, svc)
        if applies is False:
            continue
        if ingress.admits_all:
            return None
        named |= ingress.families
        if applies and first is None and ingress.first is not None:
            first = ingress.first
    if first is None or len(named) != 1 or first.family not in svc.ip_families:
        return None
    missing = next(f for f in svc.ip_families if f != first.family)
    message = (
        f"NetworkPolicy {first.policy.name} selects its pods and its ingress rule "
        f"{first.index} admits {first.family} blocks only ({', '.join(first.cidrs)}), and no "
        f"policy selecting them admits {missing} ones: {missing} clients outside the cluster "
        f"are refused. Add the matching {missing} ipBlock "
        f"({'::/0' if missing == 'IPv6' else '0.0.0.0/0'} beside "
        f"{'0.0.0.0/0' if missing == 'IPv6' else '::/0'}, say) to that rule"
    )
    return Finding(DriftReason.NETWORK_POLICY_ONE_FAMILY, Severity.BLOCKING, message)


def findings_of(svc: ServiceView, rules: Sequence[IngressPolicy] | None) -> list[Finding]:
    """Every readiness finding of a dual-stack Service (``rules`` None: NetworkPolicies
    not checked). Most Services have none of the fields looked at: they cost a test."""
    if len(svc.ip_families) < 2:
        return []
    found = []
    if svc.lb_ingress or svc.source_ranges or svc.external_ips:
        found = [load_balancer(svc), source_ranges(svc), external_ips(svc)]
    if rules:
        found.append(network_policies(svc, rules))
    return [f for f in found if f is not None]


def service_findings(
    svc: ServiceView, policies: Iterable[NetworkPolicyView] | None
) -> list[Finding]:
    """``findings_of`` for one Service and the NetworkPolicies of its namespace."""
    return findings_of(svc, ingress_policies(policies) if policies is not None else None)


def with_readiness(
    plans: list[PolicyPlan],
    services: Mapping[str, ServiceView],
    policies: Iterable[NetworkPolicyView] | None,
) -> list[PolicyPlan]:
    """The plans with the first readiness finding of each compliant dual-stack Service as
    its verdict (the others are named in its message)."""
    rules = ingress_policies(policies) if policies is not None else None

    def verdict(name: str) -> Decision | None:
        svc = services[name]
        if not (rules or svc.lb_ingress or svc.source_ranges or svc.external_ips):
            return None  # nothing to look at: most Services, most passes
        found = findings_of(svc, rules)
        return as_decision(found) if found else None

    return override_compliant(plans, verdict)


def as_decision(found: Sequence[Finding]) -> Decision:
    first, rest = found[0], found[1:]
    message = first.message
    if rest:
        message += "; also " + ", ".join(f.reason for f in rest)
    return Decision(State.DRIFTED, DriftReason(first.reason), message)


@dataclass(frozen=True)
class DnsCheck:
    """The cluster DNS Service, checked: its finding (None: it serves every family)."""

    name: str
    families: tuple[str, ...]
    finding: Finding | None


def check_dns(dns: ServiceView | bool | None, cluster: Sequence[str]) -> DnsCheck | None:
    """None when there is nothing to say: a single-stack cluster, no kube-dns Service,
    or one the operator does not watch (``False``: kube-system is not among its
    namespaces)."""
    if not isinstance(dns, ServiceView) or len(cluster) < 2 or not dns.ip_families:
        return None
    return DnsCheck(dns.name, dns.ip_families, cluster_dns(dns, cluster))


def cluster_dns(dns: ServiceView | None, cluster: Sequence[str]) -> Finding | None:
    """``ClusterDNSSingleStack`` when the cluster offers two families and the kube-dns
    Service has one: clients of the other family only (IPv6-only pods, say) cannot
    resolve names. Advisory: dual-stack clients still reach it over its family."""
    if dns is None or len(cluster) < 2 or len(dns.ip_families) != 1:
        return None
    have = dns.ip_families[0]
    missing = next(f for f in cluster if f != have)
    message = (
        f"the cluster DNS Service kube-system/{dns.name} is {have} only while the cluster "
        f"offers {', '.join(cluster)}: {missing}-only clients cannot resolve names. Make it "
        f"dual-stack (ipFamilyPolicy: PreferDualStack) and give the kubelets' clusterDNS a "
        f"{missing} address"
    )
    return Finding(CLUSTER_DNS_SINGLE_STACK, Severity.ADVISORY, message)
