"""Metrics, dashboard and alerts, proven on a real Prometheus scraping real operators.

One scenario for the module: a dual-stack cluster with drifted Services and a
patch the API server rejects, and a single-stack cluster with a RequireDualStack
policy. Prometheus (Debian's package) scrapes both operators every second; every
dashboard query and alert expression is read from the shipped files and must
evaluate without error and return data.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import REPO, LocalCluster, Process, Supervisor, free_port
from support.kube import Kubectl, deny_require_dual_stack, service, wait_for
from support.monitoring import (
    MONITORING,
    alert_rules,
    dashboard_queries,
    rule_groups,
)
from support.operator_proc import OperatorProcess


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `apt-get install prometheus` (.ci/run does it)")
    return path


@dataclass
class Prometheus:
    url: str
    proc: Process

    def query(self, expr: str) -> dict[str, Any]:
        qs = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=10) as resp:  # noqa: S310
            body: dict[str, Any] = json.loads(resp.read())
        return body

    def series(self, expr: str) -> list[dict[str, Any]]:
        body = self.query(expr)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@dataclass
class Scenario:
    prometheus: Prometheus
    dual: Kubectl  # namespace with drift
    rejected: Kubectl  # namespace where the API server refuses the operator's patch
    single: Kubectl
    dual_operator: OperatorProcess
    single_operator: OperatorProcess


def _namespace(cluster: LocalCluster, binaries: Path, name: str) -> Kubectl:
    admin = Kubectl(binaries / "kubectl", cluster.kubeconfig)
    admin.run("create", "namespace", name)
    return admin.in_namespace(name)


def dsp(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dualstack.dev/v1alpha1",
        "kind": "DualStackPolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def scenario(
    dual_cluster: LocalCluster,
    single_cluster: LocalCluster,
    binaries: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    prometheus_bin = need("prometheus")
    tmp = tmp_path_factory.mktemp("monitoring")
    dual = _namespace(dual_cluster, binaries, "mon-drift")
    rejected = _namespace(dual_cluster, binaries, "mon-rejected")
    single = _namespace(single_cluster, binaries, "mon-single")
    admin = Kubectl(binaries / "kubectl", dual_cluster.kubeconfig)
    deny_require_dual_stack(admin, "mon-rejected", "RequireDualStack is not allowed here")

    for name in ("web", "api", "checkout"):
        dual.create(service(name, selector={"app": name}))
    dual.create(service("payments", type="ExternalName", externalName="pay.example.com"))
    rejected.create(service("blocked", selector={"app": "b"}))
    single.create(service("web", selector={"app": "web"}))
    # The cluster DNS Service, for dualstack_cluster_dns_ip_families (the single-stack
    # cluster's operator watches kube-system too; this cluster has no kube-dns of its own).
    system = Kubectl(binaries / "kubectl", single_cluster.kubeconfig).in_namespace("kube-system")
    dns = service("kube-dns")
    dns["metadata"]["namespace"] = "kube-system"
    system.create(dns)

    dual_op = OperatorProcess(
        dual_cluster.operator_kubeconfig, ["mon-drift", "mon-rejected"], tmp / "dual.log"
    ).start()
    single_op = OperatorProcess(
        single_cluster.operator_kubeconfig, ["mon-single", "kube-system"], tmp / "single.log"
    ).start()

    port = free_port()
    rules = tmp / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "dualstack-operator",
                "static_configs": [
                    {
                        "targets": [
                            f"127.0.0.1:{dual_op.metrics_port}",
                            f"127.0.0.1:{single_op.metrics_port}",
                        ]
                    }
                ],
            }
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = Supervisor(tmp, record=False).start(
        "prometheus",
        [
            prometheus_bin,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log=tmp / "prometheus.log",
    )
    prometheus = Prometheus(f"http://127.0.0.1:{port}", proc)
    try:
        wait_for(
            "Prometheus to be ready",
            lambda: _ok(f"{prometheus.url}/-/ready"),
            timeout=60,
        )
        # The rejected namespace starts in Audit: its error counter is scraped at 0 first,
        # so the switch to Enforce shows up as an increase.
        rejected.create(dsp(ipFamilyPolicy="RequireDualStack", mode="Audit"))
        dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
        single.create(dsp(ipFamilyPolicy="RequireDualStack"))
        wait_for(
            "the error counter to be scraped at 0",
            lambda: prometheus.series(
                'dualstack_remediations_total{namespace="mon-rejected",result="error"} == 0'
            ),
            timeout=60,
        )
        rejected.patch("dsp", "default", {"spec": {"mode": "Enforce"}})
        wait_for(
            "the rejection to be scraped",
            lambda: prometheus.series(
                'dualstack_remediations_total{namespace="mon-rejected",result="error"} > 0'
            ),
            timeout=60,
        )
        yield Scenario(prometheus, dual, rejected, single, dual_op, single_op)
    finally:
        proc.stop(grace=20)
        dual_op.stop()
        single_op.stop()
        for name in ("ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy"):
            admin.run("delete", name, "deny-require-mon-rejected", "--ignore-not-found")
        system.run("delete", "service", "kube-dns", "--ignore-not-found")
        for k in (dual, rejected, single):
            Kubectl(k.binary, k.kubeconfig).run(
                "delete", "namespace", k.namespace or "", "--wait=false"
            )


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except OSError:
        return False


def _scrape(operator: OperatorProcess) -> str:
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


# --- static checks -------------------------------------------------------------------------


def test_promtool_check_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    out = subprocess.run(
        [need("promtool"), "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def test_promtool_unit_tests_cover_every_alert(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    tests = REPO / "tests" / "promtool" / "alerts_test.yaml"
    shutil.copy(tests, tmp_path / "alerts_test.yaml")
    out = subprocess.run(
        [need("promtool"), "test", "rules", str(tmp_path / "alerts_test.yaml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tested = {
        t["alertname"]
        for case in yaml.safe_load(tests.read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert tested == {r["alert"] for r in alert_rules()}


def test_kustomize_component_renders(binaries: Path) -> None:
    out = subprocess.run(
        [str(binaries / "kubectl"), "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    cm = kinds["ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["dualstack-operator.json"])["uid"] == "dualstack-operator"


# --- against the running scenario ----------------------------------------------------------


def test_promtool_check_metrics_on_the_exposition(scenario: Scenario) -> None:
    text = _scrape(scenario.dual_operator)
    out = subprocess.run(
        [need("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for name in (
        "dualstack_services",
        "dualstack_service_drift",
        "dualstack_remediations_total",
        "dualstack_reconcile_duration_seconds_bucket",
        "dualstack_reconcile_errors_total",
        "dualstack_cluster_ip_families",
        "dualstack_policy_info",
    ):
        assert f"\n{name}{{" in text, name
    assert 'service="' not in text, "no per-Service labels"


def test_metric_values_equal_the_policy_status(scenario: Scenario) -> None:
    p = scenario.prometheus
    status = scenario.dual.get("dsp", "default")["status"]
    wanted = {
        "compliant": status["compliantServices"],
        "drifted": status["driftedServices"],
        "excluded": status["excludedServices"],
    }
    assert wanted == {"compliant": 0, "drifted": 3, "excluded": 1}

    def scraped() -> dict[str, float] | None:
        got = {
            s["metric"]["state"]: float(s["value"][1])
            for s in p.series('dualstack_services{namespace="mon-drift"}')
        }
        return got if got == wanted else None

    wait_for("Prometheus to hold the status counts", scraped, timeout=30)
    drift = p.series('dualstack_service_drift{namespace="mon-drift"} > 0')
    assert [(s["metric"]["reason"], s["value"][1]) for s in drift] == [
        ("PrimaryFamilyMismatch", "3")
    ]
    families = {
        (
            s["metric"]["instance"].endswith(str(scenario.single_operator.metrics_port)),
            s["metric"]["family"],
        ): s["value"][1]
        for s in p.series("dualstack_cluster_ip_families")
    }
    assert families == {
        (False, "IPv4"): "1",
        (False, "IPv6"): "1",
        (True, "IPv4"): "1",
        (True, "IPv6"): "0",
    }


def test_every_dashboard_query_returns_data(scenario: Scenario) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 8
    for title, expr in queries:
        body = scenario.prometheus.query(expr)
        assert body["status"] == "success", (title, body)
        wait_for(
            f"data for panel {title!r}: {expr}",
            functools.partial(scenario.prometheus.series, expr),
            timeout=60,
        )


def test_every_alert_expression_returns_data_and_the_rules_are_healthy(
    scenario: Scenario,
) -> None:
    p = scenario.prometheus
    rules = alert_rules()
    absent = "DualStackOperatorAbsent"
    for rule in rules:
        if rule["alert"] == absent:
            continue
        wait_for(f"data for alert {rule['alert']}", functools.partial(p.series, rule["expr"]), 60)
    with urllib.request.urlopen(f"{p.url}/api/v1/rules", timeout=10) as resp:  # noqa: S310
        groups = json.loads(resp.read())["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in loaded} == {r["alert"] for r in rules}
    assert all(r["health"] == "ok" for r in loaded), loaded

    # The operator going away is the last act: stop one and its alert expression fires.
    scenario.single_operator.stop()
    expr = next(r["expr"] for r in rules if r["alert"] == absent)
    down = wait_for("the absent-operator expression", lambda: p.series(expr), timeout=60)
    assert down[0]["metric"]["instance"].endswith(str(scenario.single_operator.metrics_port))


def test_series_of_a_deleted_policy_disappear(scenario: Scenario) -> None:
    assert "mon-drift" in _scrape(scenario.dual_operator)
    scenario.dual.run("delete", "dsp", "default")
    wait_for(
        "the deleted policy's series to go",
        lambda: 'namespace="mon-drift"' not in _scrape(scenario.dual_operator),
        timeout=30,
    )
    assert 'namespace="mon-rejected"' in _scrape(scenario.dual_operator)
