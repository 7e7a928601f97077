"""The Helm chart with the real Helm: lint, its schema, the same objects as manifests/,
and every main combination of values accepted by the real API server (server-side dry
run). Installing, testing, upgrading and uninstalling it on a node: test_node.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import REPO, LocalCluster
from support.kube import Kubectl

CHART = REPO / "charts" / "dualstack-operator"
MANIFESTS = REPO / "manifests"
# Labels Helm's conventions add and kustomize's output has not; nothing else may differ.
CHART_ONLY_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
)
# Values and the kustomize components that install the same thing.
EQUIVALENT = {
    "default": ([], []),
    "native-admission": (["admission=policy"], ["native-admission"]),
    "webhook": (["admission=webhook"], ["admission"]),
    "metrics-secure": (["metricsSecure=true"], ["metrics-auth"]),
    "recreate": (["recreate.enabled=true"], ["recreate"]),
    "monitoring": (
        [
            "monitoring.serviceMonitor.enabled=true",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.dashboard.enabled=true",
        ],
        ["monitoring"],
    ),
    "everything": (
        [
            "admission=webhook",
            "metricsSecure=true",
            "recreate.enabled=true",
            "monitoring.serviceMonitor.enabled=true",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.dashboard.enabled=true",
        ],
        ["admission", "metrics-auth", "recreate", "monitoring"],
    ),
}


def helm_run(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, check=check)


def render(helm: Path, namespace: str, sets: list[str], *extra: str) -> list[dict[str, Any]]:
    argv = ["template", "dualstack-operator", str(CHART), "-n", namespace, "--include-crds"]
    for value in sets:
        argv += ["--set", value]
    out = helm_run(helm, *argv, *extra).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kustomized(kubectl: Path, tmp: Path, components: list[str]) -> list[dict[str, Any]]:
    overlay = tmp / "overlay"
    overlay.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(MANIFESTS, overlay)
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [rel],
        "components": [f"{rel}/{c}" for c in components],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    out = subprocess.run(
        [str(kubectl), "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def normalized(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Objects by (kind, namespace, name), without Helm's own labels and hooks, with the
    operator's arguments as a set (their order means nothing)."""
    out = {}
    for doc in json.loads(json.dumps(docs)):
        meta = doc["metadata"]
        if "helm.sh/hook" in (meta.get("annotations") or {}):
            continue
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in CHART_ONLY_LABELS}
        if labels:
            meta["labels"] = labels
        else:
            meta.pop("labels", None)
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                container["args"] = sorted(container["args"])
        out[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    return out


def test_lint_strict(helm: Path) -> None:
    out = helm_run(helm, "lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("case", sorted(EQUIVALENT))
def test_the_chart_installs_what_the_manifests_install(
    case: str, helm: Path, binaries: Path, tmp_path: Path
) -> None:
    """One source of truth, checked: for each combination, the chart's objects equal the
    kustomize overlay's, but for Helm's labels, its test hook and the Namespace (Helm's
    `--create-namespace` makes it; the manifests make it with Pod Security labels)."""
    sets, components = EQUIVALENT[case]
    chart = normalized(render(helm, "dualstack-system", sets))
    manifests = normalized(kustomized(binaries / "kubectl", tmp_path, components))
    manifests.pop(("Namespace", "", "dualstack-system"))
    assert sorted(chart) == sorted(manifests)
    for key, obj in manifests.items():
        assert chart[key] == obj, key


def test_the_default_install_cannot_delete_services(helm: Path) -> None:
    docs = render(helm, "dualstack-system", [])
    rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    services = [r for r in rules if "services" in r.get("resources", [])]
    assert services, "the operator needs Services"
    assert not [r for r in services if {"delete", "*"} & set(r["verbs"])]
    assert not [r for r in rules if "configmaps" in r.get("resources", [])]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("admission=sometimes", "'/admission'"),
        ("replicas=0", "'/replicas': minimum: got 0, want 1"),
        ("replica=3", "additional properties 'replica' not allowed"),
        ("logFormat=xml", "'/logFormat': value must be one of 'text', 'json'"),
        ("image.pullPolicy=Sometimes", "'/image/pullPolicy'"),
        ("namespaces[0]=Not_A_Name", "'/namespaces/0'"),
        ("monitoring.serviceMonitor.interval=soon", "'/monitoring/serviceMonitor/interval'"),
        ("webhook.certmanager=true", "additional properties 'certmanager' not allowed"),
    ],
)
def test_bad_values_are_refused_by_the_schema(helm: Path, value: str, message: str) -> None:
    out = helm_run(helm, "template", "x", str(CHART), "--set", value, check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_a_bare_off_in_a_values_file_means_off(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("admission: off\n")  # YAML 1.1 reads it as false
    docs = render(helm, "ns", [], "-f", str(values))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--admission")]


STUBBED = [
    ("cert-manager.io", "Issuer", "issuers"),
    ("cert-manager.io", "Certificate", "certificates"),
    ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
    ("monitoring.coreos.com", "PrometheusRule", "prometheusrules"),
]


def _stub_crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    """cert-manager's and the Prometheus Operator's kinds, without their schemas (they are
    not installed here): the dry run then checks our objects' shape, not theirs."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@pytest.mark.parametrize("case", sorted(EQUIVALENT))
def test_every_combination_is_accepted_by_the_api_server(
    case: str, helm: Path, dual_cluster: LocalCluster, binaries: Path, tmp_path: Path
) -> None:
    admin = Kubectl(binaries / "kubectl", dual_cluster.kubeconfig)
    stubs = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [_stub_crd(*k) for k in STUBBED],
    }
    admin.run("apply", "-f", "-", stdin=json.dumps(stubs))
    admin.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    namespace = f"chart-{uuid.uuid4().hex[:6]}"
    admin.run("create", "namespace", namespace)
    try:
        sets = [*EQUIVALENT[case][0], "namespaces={a,b}"]
        docs = render(helm, namespace, sets)
        path = tmp_path / "rendered.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
        out = admin.run(
            "apply", "--server-side", "--force-conflicts", "--field-manager=helm-test",
            "--dry-run=server", "-f", str(path),
        )  # fmt: skip
        assert out.count("serverside-applied (server dry run)") == len(docs), out
    finally:
        admin.run("delete", "namespace", namespace, "--wait=false")


def test_make_deploy_installs_the_manifests_with_the_image_given(binaries: Path) -> None:
    """`make deploy IMG=... COMPONENTS=...`: the manifests' objects, with that image."""
    argv = [sys.executable, str(REPO / "hack" / "deploy.py"), "render"]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "hack"),
        "PATH": f"{binaries}:{os.environ['PATH']}",
    }
    out = subprocess.run(
        [*argv, "--image", "registry.example/ops/dualstack:1.2", "--components", "recreate"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example/ops/dualstack:1.2"
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"} >= {
        "dualstack-operator",
        "dualstack-operator-recreate",
    }
    bad = subprocess.run(
        [*argv, "--components", "monitoring nonsense"], capture_output=True, text=True,
        check=False, env=env,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "no such component: nonsense" in bad.stderr
