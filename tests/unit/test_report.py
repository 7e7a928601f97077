"""The migration plan's verdicts, from the same decision as the reconciler."""

from __future__ import annotations

import json
from typing import Any

from dualstack_operator.api.models import IPFamily
from dualstack_operator.core.views import PolicyView, ServiceView
from dualstack_operator.migration.report import (
    Verdict,
    build_report,
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
