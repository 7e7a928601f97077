"""The migration plan: what policies would do to a cluster's Services, before they do it.

Pure: the same ``plan_namespace`` and ``decide`` as the reconciler, asked as if
every policy were in Enforce (the plan answers "what would Enforce do"), turned
into one line per governed Service and totals. Rendering (table, JSON, Markdown)
is here too; reading the cluster is the command's (``cli.plan``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from dualstack_operator.api.models import (
    DriftReason,
    IPFamily,
    Mode,
    PrimaryFamilyChange,
)
from dualstack_operator.core.creation import creation_patch
from dualstack_operator.core.decision import State
from dualstack_operator.core.plan import plan_namespace
from dualstack_operator.core.readiness import (
    CLUSTER_DNS_SINGLE_STACK,
    Finding,
    IngressPolicy,
    Severity,
    check_dns,
    findings_of,
    ingress_policies,
)
from dualstack_operator.core.recreation import describe_fields, recreatable, recreation_risk
from dualstack_operator.core.views import NetworkPolicyView, PolicyView, ServiceView


class Verdict(StrEnum):
    COMPLIANT = "Compliant"
    PATCH = "Patch"  # fixed in place by one patch
    RECREATE = "Recreate"  # the primary family is wrong: only a new Service fixes it
    BLOCKED = "Blocked"  # nothing can be written (the cluster lacks a family)
    EXCLUDED = "Excluded"  # ExternalName or opted out


@dataclass(frozen=True)
class Line:
    """One governed Service: where it stands and what the policy would do to it."""

    namespace: str
    service: str
    type: str
    current: str  # ipFamilyPolicy [families]
    policy: str  # the governing policy
    mode: str
    verdict: Verdict
    reason: str  # the drift reason, if any
    change: str  # what would be written, or what the Service would be recreated as
    risk: str  # of a recreation
    automatic: bool  # whether the operator would do it (Enforce; Recreate where opted in)
    conflicts: list[str] = field(default_factory=list)  # newer policies also selecting it
    # Readiness: what else keeps it from serving the families it has (or will have).
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class Readings:
    """What the plan read past Services and policies, and what it could not read."""

    network_policies: Mapping[str, Sequence[NetworkPolicyView]] | None = None  # None: unread
    dns: ServiceView | None = None  # the cluster DNS Service
    not_checked: list[str] = field(default_factory=list)  # "NetworkPolicyOneFamily: ..."


@dataclass(frozen=True)
class ClusterSection:
    """The cluster as a whole: its families, its DNS Service, and the Services that keep
    one family after a conversion until they are written again."""

    families: list[str]
    dns: str  # "kube-system/kube-dns: IPv4", or why it is not known
    findings: list[Finding]
    touch_after_conversion: int
    not_checked: list[str]


@dataclass(frozen=True)
class Report:
    cluster: list[str]
    lines: list[Line]
    namespaces: list[str]
    section: ClusterSection | None = None

    def findings(self) -> list[Finding]:
        own = self.section.findings if self.section is not None else []
        return [*own, *(f for line in self.lines for f in line.findings)]

    def totals(self) -> dict[str, int]:
        counts = Counter(str(line.verdict) for line in self.lines)
        severities = Counter(str(f.severity) for f in self.findings())
        return {
            "namespaces": len(self.namespaces),
            "services": len(self.lines),
            **{str(v): counts[str(v)] for v in Verdict},
            "conflicts": sum(1 for line in self.lines if line.conflicts),
            **{str(s): severities[str(s)] for s in Severity},
        }


def target_families(
    svc: ServiceView, change: Mapping[str, Any] | None, cluster: Sequence[IPFamily]
) -> tuple[str, ...]:
    """The families the Service will have once ``change`` (the fields written, or the
    fields it is recreated with) is made: what the API server gives a dual-stack policy
    without a list is every cluster family, the current ones first."""
    if change is None:
        return svc.ip_families
    families = change.get("ipFamilies")
    if families:
        return tuple(str(f) for f in families)
    policy = change.get("ipFamilyPolicy", svc.ip_family_policy)
    if policy in ("PreferDualStack", "RequireDualStack"):
        extra = [str(f) for f in cluster if str(f) not in svc.ip_families]
        return (*svc.ip_families, *extra)[:2]
    return svc.ip_families[:1]


def readiness(
    svc: ServiceView, families: tuple[str, ...], rules: Sequence[IngressPolicy] | None
) -> list[Finding]:
    """The readiness findings of the Service with the families it will have; the
    LoadBalancer's addresses only where they stay (a changed Service gets new ones)."""
    if families == svc.ip_families:
        return findings_of(svc, rules)
    return findings_of(replace(svc, ip_families=families, lb_ingress=()), rules)


def plan_lines(
    policies: Iterable[PolicyView],
    services: Iterable[ServiceView],
    cluster: Sequence[IPFamily],
    network_policies: Sequence[NetworkPolicyView] | None = None,
) -> list[Line]:
    """One line per Service a policy of the namespace selects, by name."""
    views = list(policies)
    enforced = [
        replace(p, spec=p.spec.model_copy(update={"mode": Mode.ENFORCE}) if p.spec else None)
        for p in views
    ]
    modes = {p.name: str(p.spec.mode) if p.spec else "" for p in views}
    by_name = {s.name: s for s in services}
    rules = ingress_policies(network_policies) if network_policies is not None else None
    lines: dict[str, Line] = {}
    conflicts: dict[str, list[str]] = {}
    for plan in plan_namespace(enforced, by_name.values(), cluster):
        spec = plan.policy.spec
        assert spec is not None or not plan.decisions
        for name, decision in plan.decisions.items():
            if decision.reason == DriftReason.CONFLICT:
                conflicts.setdefault(name, []).append(plan.policy.name)
                continue
            assert spec is not None
            svc = by_name[name]
            audit = modes[plan.policy.name] == str(Mode.AUDIT)
            verdict, change, risk = Verdict.COMPLIANT, "", ""
            automatic = False
            target: Mapping[str, Any] | None = None
            if decision.state == State.EXCLUDED:
                verdict = Verdict.EXCLUDED
                change = "ExternalName" if svc.type == "ExternalName" else "opted out"
            elif decision.reason == DriftReason.PRIMARY_FAMILY_MISMATCH and not svc.headless:
                verdict = Verdict.RECREATE
                wanted = creation_patch(spec, svc.ip_family_policy, svc.ip_families, cluster) or {}
                target = wanted
                change = "recreate as " + describe_fields(
                    wanted.get("ipFamilyPolicy", svc.ip_family_policy),
                    wanted.get("ipFamilies", svc.ip_families),
                )
                if decision.patch is not None:
                    patch = decision.patch["spec"]
                    interim = describe_fields(
                        patch["ipFamilyPolicy"], patch.get("ipFamilies", svc.ip_families)
                    )
                    change += f"; until then patched to {interim}"
                risk = recreation_risk(svc)
                automatic = (
                    not audit
                    and spec.primary_family_change == PrimaryFamilyChange.RECREATE
                    and recreatable(svc)
                )
            elif decision.patch is not None:
                verdict = Verdict.PATCH
                patch = target = decision.patch["spec"]
                change = describe_fields(
                    patch["ipFamilyPolicy"], patch.get("ipFamilies", svc.ip_families)
                )
                automatic = not audit
            elif decision.state == State.DRIFTED:
                verdict = Verdict.BLOCKED
                change = decision.message
            lines[name] = Line(
                namespace=svc.namespace,
                service=name,
                type="Headless" if svc.headless else svc.type,
                current=describe_fields(svc.ip_family_policy, svc.ip_families),
                policy=f"cdsp/{plan.policy.name}" if plan.policy.cluster else plan.policy.name,
                mode=modes[plan.policy.name],
                verdict=verdict,
                reason=str(decision.reason or ""),
                change=change,
                risk=risk,
                automatic=automatic,
                findings=[]
                if decision.state == State.EXCLUDED
                else readiness(svc, target_families(svc, target, cluster), rules),
            )
    for name, losers in conflicts.items():
        if name in lines:
            lines[name].conflicts.extend(losers)
    return [lines[name] for name in sorted(lines)]


def build_report(
    policies: Mapping[str, Sequence[PolicyView]],
    services: Mapping[str, Sequence[ServiceView]],
    cluster: Sequence[IPFamily],
    readings: Readings | None = None,
) -> Report:
    """The plan for every namespace that has a policy, and the cluster's section."""
    readings = readings or Readings(not_checked=["readiness: not read"])
    lines: list[Line] = []
    namespaces = sorted(ns for ns, views in policies.items() if views)
    netpols = readings.network_policies
    for ns in namespaces:
        found = None if netpols is None else netpols.get(ns, ())
        lines += plan_lines(policies[ns], services.get(ns, ()), cluster, found)
    families = [str(f) for f in cluster]
    return Report(families, lines, namespaces, cluster_section(families, services, readings))


def cluster_section(
    families: list[str], services: Mapping[str, Sequence[ServiceView]], readings: Readings
) -> ClusterSection:
    dns = readings.dns
    checked = check_dns(dns, families) if dns is not None else None
    if dns is not None:
        said = f"kube-system/{dns.name}: {', '.join(dns.ip_families) or 'headless'}"
    elif any(n.startswith(CLUSTER_DNS_SINGLE_STACK) for n in readings.not_checked):
        said = "not checked"
    else:
        said = "no kube-system/kube-dns Service"
    # PreferDualStack Services with one family: a conversion (or one that happened) gives
    # them their second family only when they are written again.
    touch = sum(
        1
        for views in services.values()
        for svc in views
        if svc.ip_family_policy == "PreferDualStack" and len(svc.ip_families) == 1
    )
    findings = [checked.finding] if checked is not None and checked.finding else []
    return ClusterSection(families, said, findings, touch, list(readings.not_checked))


COLUMNS = (
    "NAMESPACE",
    "SERVICE",
    "TYPE",
    "NOW",
    "POLICY",
    "VERDICT",
    "CHANGE",
    "RISK",
    "READINESS",
)


def _row(line: Line) -> list[str]:
    verdict = str(line.verdict)
    if line.verdict in (Verdict.PATCH, Verdict.RECREATE):
        verdict += "" if line.automatic else " (by hand)"
    policy = line.policy + (f" (+{','.join(line.conflicts)})" if line.conflicts else "")
    if line.mode == str(Mode.AUDIT):
        policy += " [Audit]"
    return [
        line.namespace,
        line.service,
        line.type,
        line.current,
        policy,
        verdict,
        line.change,
        line.risk,
        ", ".join(f"{f.reason} ({f.severity})" for f in line.findings),
    ]


def _summary(report: Report) -> str:
    totals = report.totals()
    parts = ", ".join(f"{totals[str(v)]} {str(v).lower()}" for v in Verdict)
    return (
        f"cluster families: {', '.join(report.cluster) or 'unknown'}; "
        f"{totals['services']} Services in {totals['namespaces']} namespaces: {parts}; "
        f"{totals['conflicts']} selected by more than one policy; readiness: "
        f"{totals['blocking']} blocking, {totals['advisory']} advisory"
    )


def _details(report: Report) -> list[str]:
    """The cluster section, then each finding's message: what to fix, and how."""
    section = report.section
    if section is None:
        return []
    out = [
        "",
        "cluster:",
        f"  families: {', '.join(section.families) or 'unknown'}",
        f"  DNS: {section.dns}",
        f"  PreferDualStack Services with one family (written again, they get the "
        f"second once the cluster has it): {section.touch_after_conversion}",
    ]
    out += [f"  {f.reason} ({f.severity}): {f.message}" for f in section.findings]
    out += [f"  not checked: {n}" for n in section.not_checked]
    found = [(line, f) for line in report.lines for f in line.findings]
    if found:
        out += ["readiness:"]
        out += [
            f"  {line.namespace}/{line.service}: {f.reason} ({f.severity}): {f.message}"
            for line, f in found
        ]
    return out


def render_table(report: Report) -> str:
    rows = [list(COLUMNS), *(_row(line) for line in report.lines)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join([*out, "", _summary(report), *_details(report)]) + "\n"


def render_markdown(report: Report) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    out = [
        "| " + " | ".join(c.title() for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(esc(c) for c in _row(line)) + " |" for line in report.lines),
        "",
        _summary(report),
        "",
        *_markdown_details(_details(report)),
    ]
    return "\n".join(out) + "\n"


def report_doc(report: Report) -> dict[str, Any]:
    """The report as JSON: every line with its findings, the cluster section, totals."""
    return {
        "clusterIPFamilies": report.cluster,
        "namespaces": report.namespaces,
        "services": [{**asdict(line), "verdict": str(line.verdict)} for line in report.lines],
        "cluster": asdict(report.section) if report.section is not None else None,
        "totals": report.totals(),
    }


def _markdown_details(details: list[str]) -> list[str]:
    """The details as bold headings (each after a blank line) over bullet lists."""
    out: list[str] = []
    for d in details:
        if d.startswith("  "):
            out.append(f"- {d.strip()}")
        elif d:
            out += ["", f"**{d}**", ""]
    return out


def render_json(report: Report) -> str:
    return json.dumps(report_doc(report), indent=2) + "\n"


RENDERERS = {"table": render_table, "json": render_json, "markdown": render_markdown}


FLEET_COLUMNS = ("CONTEXT", "FAMILIES", "DNS", "SERVICES", *(str(v).upper() for v in Verdict))


def _fleet_row(name: str, report: Report | str) -> list[str]:
    if isinstance(report, str):
        return [name, "error", "", "", *("" for _ in Verdict), "", ""]
    totals = report.totals()
    dns = report.section.dns if report.section is not None else ""
    return [
        name,
        ",".join(report.cluster) or "unknown",
        dns.split(": ", 1)[-1],
        str(totals["services"]),
        *(str(totals[str(v)]) for v in Verdict),
        str(totals["blocking"]),
        str(totals["advisory"]),
    ]


def render_fleet(reports: Mapping[str, Report | str], output: str) -> str:
    """Several clusters: one summary row each, then each cluster's plan beneath (or why
    it could not be read)."""
    if output == "json":
        doc = {
            "clusters": [
                {"context": name, "error": r}
                if isinstance(r, str)
                else {"context": name, **report_doc(r)}
                for name, r in reports.items()
            ],
        }
        return json.dumps(doc, indent=2) + "\n"
    header = [*FLEET_COLUMNS, "BLOCKING", "ADVISORY"]
    rows = [header, *(_fleet_row(name, r) for name, r in reports.items())]
    if output == "markdown":
        out = [
            "| " + " | ".join(c.title() for c in header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows[1:]),
        ]
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for name, report in reports.items():
        body = f"error: {report}" if isinstance(report, str) else RENDERERS[output](report)
        out += ["", f"== {name} ==", body.rstrip("\n")]
    return "\n".join(out) + "\n"
