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
from dualstack_operator.core.recreation import describe_fields, recreatable, recreation_risk
from dualstack_operator.core.views import PolicyView, ServiceView


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


@dataclass(frozen=True)
class Report:
    cluster: list[str]
    lines: list[Line]
    namespaces: list[str]

    def totals(self) -> dict[str, int]:
        counts = Counter(str(line.verdict) for line in self.lines)
        return {
            "namespaces": len(self.namespaces),
            "services": len(self.lines),
            **{str(v): counts[str(v)] for v in Verdict},
            "conflicts": sum(1 for line in self.lines if line.conflicts),
        }


def plan_lines(
    policies: Iterable[PolicyView], services: Iterable[ServiceView], cluster: Sequence[IPFamily]
) -> list[Line]:
    """One line per Service a policy of the namespace selects, by name."""
    views = list(policies)
    enforced = [
        replace(p, spec=p.spec.model_copy(update={"mode": Mode.ENFORCE}) if p.spec else None)
        for p in views
    ]
    modes = {p.name: str(p.spec.mode) if p.spec else "" for p in views}
    by_name = {s.name: s for s in services}
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
            if decision.state == State.EXCLUDED:
                verdict = Verdict.EXCLUDED
                change = "ExternalName" if svc.type == "ExternalName" else "opted out"
            elif decision.reason == DriftReason.PRIMARY_FAMILY_MISMATCH and not svc.headless:
                verdict = Verdict.RECREATE
                target = creation_patch(spec, svc.ip_family_policy, svc.ip_families, cluster)
                wanted = target or {}
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
                patch = decision.patch["spec"]
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
            )
    for name, losers in conflicts.items():
        if name in lines:
            lines[name].conflicts.extend(losers)
    return [lines[name] for name in sorted(lines)]


def build_report(
    policies: Mapping[str, Sequence[PolicyView]],
    services: Mapping[str, Sequence[ServiceView]],
    cluster: Sequence[IPFamily],
) -> Report:
    """The plan for every namespace that has a policy."""
    lines: list[Line] = []
    namespaces = sorted(ns for ns, views in policies.items() if views)
    for ns in namespaces:
        lines += plan_lines(policies[ns], services.get(ns, ()), cluster)
    return Report([str(f) for f in cluster], lines, namespaces)


COLUMNS = ("NAMESPACE", "SERVICE", "TYPE", "NOW", "POLICY", "VERDICT", "CHANGE", "RISK")


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
    ]


def _summary(report: Report) -> str:
    totals = report.totals()
    parts = ", ".join(f"{totals[str(v)]} {str(v).lower()}" for v in Verdict)
    return (
        f"cluster families: {', '.join(report.cluster) or 'unknown'}; "
        f"{totals['services']} Services in {totals['namespaces']} namespaces: {parts}; "
        f"{totals['conflicts']} selected by more than one policy"
    )


def render_table(report: Report) -> str:
    rows = [list(COLUMNS), *(_row(line) for line in report.lines)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join([*out, "", _summary(report)]) + "\n"


def render_markdown(report: Report) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    out = [
        "| " + " | ".join(c.title() for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(esc(c) for c in _row(line)) + " |" for line in report.lines),
        "",
        _summary(report),
    ]
    return "\n".join(out) + "\n"


def render_json(report: Report) -> str:
    doc: dict[str, Any] = {
        "clusterIPFamilies": report.cluster,
        "namespaces": report.namespaces,
        "services": [{**asdict(line), "verdict": str(line.verdict)} for line in report.lines],
        "totals": report.totals(),
    }
    return json.dumps(doc, indent=2) + "\n"


RENDERERS = {"table": render_table, "json": render_json, "markdown": render_markdown}
