"""The migration plan's verdicts, from the same decision as the reconciler."""

from __future__ import annotations

import json
from typing import Any

from dualstack_operator.api.models import IPFamily
from dualstack_operator.core.views import PolicyView, ServiceView
from dualstack_operator.migration.report import (
    Readings,
    Verdict,
    build_report,
    render_fleet,
    render_json,
    render_markdown,
    render_table,
)

CLUSTER = [IPFamily.IPV4, IPFamily.IPV6]


def svc(name: str, **fields: Any) -> ServiceView:
    spec = {"ports": [{"port": 80}], **fields.pop("spec", {})}
    meta = {"name": name, "namespace": "shop", **fields}
    return ServiceView.from_body({"metadata": meta, "spec": spec})


def policy(name: str, created: str = "2026-01-01T00:00:00Z", **spec: Any) -> PolicyView:
    return PolicyView.from_body(
        {
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
            "spec": spec,
        }
    )


SERVICES = [
    svc("web", spec={"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
    svc(
        "checkout",
        spec={"type": "NodePort", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]},
    ),
    svc(
        "lb", spec={"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}
    ),
    svc(
        "lb-ok",
        annotations={"dualstack.dev/recreate": "true"},
        spec={"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]},
    ),
    svc("db", spec={"clusterIP": "None", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
    svc("payments", spec={"type": "ExternalName", "externalName": "x.example.com"}),
    svc("legacy", annotations={"dualstack.dev/ignore": "true"}),
    svc("v6", spec={"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
]


def verdicts(report: Any) -> dict[str, tuple[str, bool]]:
    return {line.service: (str(line.verdict), line.automatic) for line in report.lines}


def test_each_service_gets_the_reconcilers_verdict() -> None:
    p = policy("default", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"])
    report = build_report({"shop": [p]}, {"shop": SERVICES}, CLUSTER)
    assert verdicts(report) == {
        "web": ("Recreate", False),
        "checkout": ("Recreate", False),
        "lb": ("Recreate", False),
        "lb-ok": ("Recreate", False),
        "db": ("Patch", True),  # headless: the primary changes in place
        "payments": ("Excluded", False),
        "legacy": ("Excluded", False),
        "v6": ("Compliant", False),
    }
    lines = {line.service: line for line in report.lines}
    assert lines["web"].change.startswith("recreate as RequireDualStack [IPv6, IPv4]")
    assert "until then patched to RequireDualStack [IPv4, IPv6]" in lines["web"].change
    assert "nodePorts kept" in lines["checkout"].risk
    assert "external address may change" in lines["lb"].risk
    assert "dualstack.dev/recreate=true" in lines["lb"].risk
    assert "dualstack.dev/recreate=true" not in lines["lb-ok"].risk
    assert "the families it keeps are asked for again" in lines["web"].risk
    assert report.totals()["Recreate"] == 4


def test_recreate_policies_mark_what_the_operator_would_do() -> None:
    p = policy(
        "default",
        ipFamilyPolicy="RequireDualStack",
        ipFamilies=["IPv6", "IPv4"],
        primaryFamilyChange="Recreate",
    )
    got = verdicts(build_report({"shop": [p]}, {"shop": SERVICES}, CLUSTER))
    assert got["web"] == ("Recreate", True)
    assert got["checkout"] == ("Recreate", True)
    assert got["lb"] == ("Recreate", False), "a LoadBalancer needs its own consent"
    assert got["lb-ok"] == ("Recreate", True)


def test_audit_policies_say_what_enforce_would_do_but_do_nothing() -> None:
    p = policy("default", ipFamilyPolicy="PreferDualStack", mode="Audit")
    report = build_report({"shop": [p]}, {"shop": SERVICES}, CLUSTER)
    assert verdicts(report)["web"] == ("Patch", False)
    assert "[Audit]" in render_table(report)


def test_conflicts_name_the_newer_policies() -> None:
    old = policy("z-old", "2026-01-01T00:00:00Z", ipFamilyPolicy="PreferDualStack")
    new = policy("a-new", "2026-02-01T00:00:00Z", ipFamilyPolicy="SingleStack")
    report = build_report({"shop": [new, old]}, {"shop": SERVICES[:1]}, CLUSTER)
    (line,) = report.lines
    assert (line.policy, line.conflicts) == ("z-old", ["a-new"])
    assert report.totals()["conflicts"] == 1


def test_single_stack_cluster_blocks_require_dual_stack() -> None:
    p = policy("default", ipFamilyPolicy="RequireDualStack")
    report = build_report({"shop": [p]}, {"shop": SERVICES[:1]}, [IPFamily.IPV4])
    (line,) = report.lines
    assert (line.verdict, line.reason) == (Verdict.BLOCKED, "ClusterNotDualStack")


def test_renderings() -> None:
    p = policy("default", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"])
    report = build_report({"shop": [p]}, {"shop": SERVICES}, CLUSTER)
    doc = json.loads(render_json(report))
    assert doc["clusterIPFamilies"] == ["IPv4", "IPv6"]
    assert doc["totals"]["services"] == len(SERVICES)
    assert {s["service"]: s["verdict"] for s in doc["services"]}["db"] == "Patch"
    table = render_table(report)
    assert table.splitlines()[0].split()[:3] == ["NAMESPACE", "SERVICE", "TYPE"]
    assert "8 Services in 1 namespaces" in table
    md = render_markdown(report)
    assert md.startswith("| Namespace | Service |")
    assert md.count("\n| shop |") == len(SERVICES)


def test_readiness_findings_are_judged_on_the_families_the_service_will_have() -> None:
    """A SingleStack Service the policy makes dual-stack gets the findings it will have
    (its one-family externalIPs); the cluster section counts what a conversion leaves."""
    p = policy("default", ipFamilyPolicy="RequireDualStack")
    web = svc(
        "web",
        spec={
            "ipFamilyPolicy": "SingleStack",
            "ipFamilies": ["IPv4"],
            "externalIPs": ["192.0.2.9"],
        },
    )
    prefer = svc("prefer", spec={"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"]})
    dns = ServiceView.from_body(
        {
            "metadata": {"namespace": "kube-system", "name": "kube-dns"},
            "spec": {"ipFamilies": ["IPv4"]},
        }
    )
    readings = Readings(network_policies={}, dns=dns)
    report = build_report({"shop": [p]}, {"shop": [web, prefer]}, CLUSTER, readings)
    line = next(x for x in report.lines if x.service == "web")
    assert line.verdict == Verdict.PATCH
    assert [f.reason for f in line.findings] == ["ExternalIPsOneFamily"]
    assert report.section is not None
    assert report.section.touch_after_conversion == 1
    assert [f.reason for f in report.section.findings] == ["ClusterDNSSingleStack"]
    totals = report.totals()
    assert (totals["blocking"], totals["advisory"]) == (1, 1)
    table = render_table(report)
    assert "ExternalIPsOneFamily (blocking)" in table
    assert "DNS: kube-system/kube-dns: IPv4" in table
    unread = build_report({"shop": [p]}, {"shop": [web]}, CLUSTER, Readings(not_checked=["x"]))
    assert "not checked: x" in render_table(unread)


def test_a_fleet_has_one_summary_row_per_cluster_then_each_plan() -> None:
    p = policy("default", ipFamilyPolicy="RequireDualStack")
    reports = {
        "east": build_report({"shop": [p]}, {"shop": SERVICES}, CLUSTER, Readings()),
        "west": build_report({"shop": [p]}, {"shop": SERVICES[:1]}, [IPFamily.IPV4], Readings()),
    }
    table = render_fleet(reports, "table")
    header, east, west = table.splitlines()[:3]
    assert header.split()[:4] == ["CONTEXT", "FAMILIES", "DNS", "SERVICES"]
    assert east.split()[:2] == ["east", "IPv4,IPv6"]
    assert west.split()[:2] == ["west", "IPv4"]
    assert "== east ==" in table
    assert "== west ==" in table
    doc = json.loads(render_fleet(reports, "json"))
    assert [c["context"] for c in doc["clusters"]] == ["east", "west"]
    assert doc["clusters"][1]["totals"]["Blocked"] == 1
    md = render_fleet({**reports, "north": "connection refused"}, "markdown")
    assert md.startswith("| Context | Families | Dns | Services |")
    assert "| north | error |" in md
    assert "== north ==\nerror: connection refused" in md
