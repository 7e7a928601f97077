"""`dualstack-operator plan` / `kubectl dualstack plan` against the real API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from localcluster import REPO, LocalCluster
from support.kube import Kubectl, token_kubeconfig

EXAMPLES = REPO / "examples"


def example_services(namespace: str) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((EXAMPLES / "services.yaml").read_text())
    out = []
    for doc in docs:
        if doc and doc["kind"] == "Service":
            doc["metadata"]["namespace"] = namespace
            out.append(doc)
    return out


def policy_file(tmp_path: Path, namespace: str | None, **spec: Any) -> Path:
    doc = yaml.safe_load((EXAMPLES / "policy.yaml").read_text())
    if namespace:
        doc["metadata"]["namespace"] = namespace
    else:
        doc["metadata"].pop("namespace")
    doc["spec"].update(spec)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def plan(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dualstack_operator", "plan", *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_plan_lists_each_verdict_and_writes_nothing(
    dual: Kubectl, dual_cluster: LocalCluster, tmp_path: Path
) -> None:
    ns = dual.namespace or ""
    for svc in example_services(ns):
        dual.create(svc)
    before = len(dual_cluster.audit_events())
    # As the operator's own (audited) identity: any write would show in the log.
    out = plan(dual_cluster.operator_kubeconfig, "-f", str(policy_file(tmp_path, ns)), "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["clusterIPFamilies"] == ["IPv4", "IPv6"]
    got = {s["service"]: s for s in doc["services"]}
    assert {name: s["verdict"] for name, s in got.items()} == {
        "web": "Recreate",
        "api": "Recreate",
        "checkout": "Recreate",
        "db": "Patch",
        "payments": "Excluded",
        "legacy": "Excluded",
    }
    assert got["web"]["current"] == "SingleStack [IPv4]"
    assert got["web"]["change"].startswith("recreate as RequireDualStack [IPv6, IPv4]")
    assert "nodePorts kept" in got["checkout"]["risk"]
    assert got["db"]["change"] == "RequireDualStack [IPv6, IPv4]"
    assert not got["web"]["automatic"], "Report policies leave recreation to the user"
    assert doc["totals"]["services"] == 6
    assert doc["totals"]["Recreate"] == 3
    assert len(dual_cluster.audit_events()) == before, "plan wrote to the API server"


def test_plan_of_the_clusters_own_policies_as_table_and_markdown(
    dual: Kubectl, dual_cluster: LocalCluster, tmp_path: Path
) -> None:
    ns = dual.namespace or ""
    for svc in example_services(ns):
        dual.create(svc)
    dual.create(yaml.safe_load(policy_file(tmp_path, ns).read_text()))
    table = plan(dual_cluster.kubeconfig, "-n", ns)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["NAMESPACE", "SERVICE", "TYPE"]
    assert any(r.split()[:2] == [ns, "checkout"] and "Recreate (by hand)" in r for r in rows)
    assert "6 Services in 1 namespaces" in table.stdout
    md = plan(dual_cluster.kubeconfig, "-n", ns, "-o", "markdown")
    assert md.returncode == 0
    assert md.stdout.count(f"| {ns} |") == 6


def test_plan_needs_only_list_rights_and_no_crd(
    dual: Kubectl, dual_cluster: LocalCluster, tmp_path: Path
) -> None:
    """A reader that may list Services and ServiceCIDRs, nothing else (no policy rights)."""
    ns = dual.namespace or ""
    for svc in example_services(ns):
        dual.create(svc)
    admin = Kubectl(dual.binary, dual.kubeconfig)
    reader = f"planner-{ns}"[:63]
    admin.run("create", "serviceaccount", reader, "-n", ns)
    admin.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": reader},
            "rules": [
                {"apiGroups": [""], "resources": ["services"], "verbs": ["list"]},
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["servicecidrs"],
                    "verbs": ["list"],
                },
            ],
        }
    )
    admin.run(
        "create",
        "clusterrolebinding",
        reader,
        f"--clusterrole={reader}",
        f"--serviceaccount={ns}:{reader}",
    )
    try:
        kubeconfig = token_kubeconfig(admin, dual_cluster, ns, reader, tmp_path / "reader")
        out = plan(kubeconfig, "-n", ns, "-f", str(policy_file(tmp_path, None)), "-o", "json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["totals"]["Recreate"] == 3
        # What it may not read is said, not failed on.
        assert doc["cluster"]["not_checked"] == [
            "NetworkPolicyOneFamily: no right to list networkpolicies",
        ]
        assert doc["cluster"]["dns"] == "no kube-system/kube-dns Service"
        # Without -f it would need to list policies: one clear line, no traceback.
        refused = plan(kubeconfig, "-n", ns)
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        assert refused.stderr.startswith("dualstack-operator plan: the API server refused: 403")
    finally:
        admin.run("delete", "clusterrolebinding", reader, "--ignore-not-found")
        admin.run("delete", "clusterrole", reader, "--ignore-not-found")


def test_a_policy_file_without_namespace_needs_one(
    dual_cluster: LocalCluster, tmp_path: Path
) -> None:
    out = plan(dual_cluster.kubeconfig, "-f", str(policy_file(tmp_path, None)))
    assert out.returncode == 2
    assert out.stderr.strip().endswith("has no namespace: give one with -n")


def test_kubectl_plugin(dual: Kubectl, dual_cluster: LocalCluster, tmp_path: Path) -> None:
    ns = dual.namespace or ""
    for svc in example_services(ns):
        dual.create(svc)
    venv_bin = Path(sys.executable).parent
    out = subprocess.run(
        [
            str(dual.binary),
            "dualstack",
            "plan",
            "-n",
            ns,
            "-f",
            str(policy_file(tmp_path, ns)),
            "-o",
            "json",
        ],
        env={
            **os.environ,
            "KUBECONFIG": str(dual.kubeconfig),
            "PATH": f"{venv_bin}:{os.environ['PATH']}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["totals"]["services"] == 6


def test_plan_with_a_cluster_policy_and_a_namespace_of_its_own(
    dual: Kubectl, dual_cluster: LocalCluster, tmp_path: Path
) -> None:
    ns = dual.namespace or ""
    for svc in example_services(ns):
        dual.create(svc)
    docs = [
        {
            "apiVersion": "dualstack.dev/v1alpha1",
            "kind": "ClusterDualStackPolicy",
            "metadata": {"name": "wave-1"},
            "spec": {
                "ipFamilyPolicy": "PreferDualStack",
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            },
        }
    ]
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    out = plan(dual_cluster.kubeconfig, "-n", ns, "-f", str(path), "-o", "json")
    assert out.returncode == 0, out.stderr
    got = {s["service"]: s for s in json.loads(out.stdout)["services"]}
    assert got["web"]["policy"] == "cdsp/wave-1"
    assert got["web"]["verdict"] == "Patch"  # keeps its IPv4 primary, gains IPv6
    # A namespace's own policy wins over the cluster's.
    docs.append(yaml.safe_load(policy_file(tmp_path, ns).read_text()))
    path.write_text(yaml.safe_dump_all(docs))
    out = plan(dual_cluster.kubeconfig, "-n", ns, "-f", str(path), "-o", "json")
    got = {s["service"]: s for s in json.loads(out.stdout)["services"]}
    assert got["web"]["policy"] == "default"
    assert got["web"]["verdict"] == "Recreate"


def test_plan_is_a_readiness_report_for_each_cluster_of_a_fleet(
    dual: Kubectl, dual_cluster: LocalCluster, tmp_path: Path
) -> None:
    """Per Service, the readiness findings of the families it will have (a NetworkPolicy
    admitting IPv4 blocks only in front of its pods); for --all-contexts, a summary row
    per context and each cluster's details beneath, read-only as one cluster is."""
    ns = dual.namespace or ""
    for svc in example_services(ns):
        dual.create(svc)
    dual.create(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "from-office"},
            "spec": {
                "podSelector": {},
                "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}],
            },
        }
    )
    path = policy_file(tmp_path, ns)
    out = plan(dual_cluster.kubeconfig, "-f", str(path), "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    got = {s["service"]: s for s in doc["services"]}
    selected = {name for name, s in got.items() if s["findings"]}
    assert selected, "the example Services with a selector are behind the NetworkPolicy"
    for name in selected:
        (finding,) = got[name]["findings"]
        assert finding["reason"] == "NetworkPolicyOneFamily"
        assert finding["severity"] == "blocking"
        assert "from-office" in finding["message"]
    assert doc["totals"]["blocking"] == len(selected)
    assert doc["cluster"]["families"] == ["IPv4", "IPv6"]
    assert doc["cluster"]["not_checked"] == []

    # Two contexts of one kubeconfig, both the operator's (audited) identity: any write
    # would show in the audit log.
    fleet = tmp_path / "fleet.kubeconfig"
    fleet.write_text(dual_cluster.operator_kubeconfig.read_text())
    admin = Kubectl(dual.binary, fleet)
    current = admin.run("config", "current-context").strip()
    user = admin.run("config", "view", "-o", "jsonpath={.contexts[0].context.user}").strip()
    cluster = admin.run("config", "view", "-o", "jsonpath={.contexts[0].context.cluster}").strip()
    admin.run("config", "set-context", "second", f"--cluster={cluster}", f"--user={user}")
    before = len(dual_cluster.audit_events())
    table = plan(fleet, "--all-contexts", "-f", str(path))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["CONTEXT", "FAMILIES", "DNS", "SERVICES"]
    assert sorted(line.split()[0] for line in lines[1:3]) == sorted([current, "second"])
    assert f"== {current} ==" in table.stdout
    assert "== second ==" in table.stdout
    assert table.stdout.count("NetworkPolicyOneFamily (blocking)") >= 2 * len(selected)
    assert len(dual_cluster.audit_events()) == before, "plan wrote to the API server"
    missing = plan(fleet, "--context", "nowhere", "-f", str(path))
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert "nowhere" in missing.stderr
    # In a fleet, a cluster that cannot be read is an error row; the others are read.
    partly = plan(fleet, "--context", current, "--context", "nowhere", "-f", str(path))
    assert partly.returncode == 1, partly.stderr
    assert "Traceback" not in partly.stderr
    rows = {line.split()[0]: line.split()[1] for line in partly.stdout.splitlines()[1:3]}
    assert rows == {current: "IPv4,IPv6", "nowhere": "error"}
    assert "== nowhere ==\nerror: kubeconfig, context nowhere:" in partly.stdout
