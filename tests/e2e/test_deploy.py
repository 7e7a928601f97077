"""The manifests, on the real control plane: install, least privilege, HA, Pod Security."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import REPO, LocalCluster, free_port
from support.kube import Kubectl, dsp, service, status_when, token_kubeconfig, wait_for
from support.operator_proc import OperatorProcess

MANIFESTS = REPO / "manifests"
SA = "system:serviceaccount:dualstack-system:dualstack-operator"
StartOperator = Callable[..., OperatorProcess]


@pytest.fixture(scope="module")
def installed(dual_cluster: LocalCluster, binaries: Path) -> Kubectl:
    """`kubectl apply -k manifests/`: a server-side dry-run first, then for real."""
    admin = Kubectl(binaries / "kubectl", dual_cluster.kubeconfig)
    # Namespaced objects cannot be dry-run before their namespace exists (a kubectl
    # limitation): everything else must pass, and only those may fail, with NotFound.
    dry = subprocess.run(
        [
            str(admin.binary),
            f"--kubeconfig={admin.kubeconfig}",
            "apply",
            "-k",
            str(MANIFESTS),
            "--dry-run=server",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in dry.stderr.splitlines() if line.strip()]
    assert all('namespaces "dualstack-system" not found' in e for e in errors), dry.stderr
    assert (
        "clusterrole.rbac.authorization.k8s.io/dualstack-operator created (server dry run)"
        in dry.stdout
    )
    admin.run("apply", "-f", str(MANIFESTS / "base" / "namespace.yaml"))
    out = admin.run("apply", "-k", str(MANIFESTS), "--dry-run=server")
    assert "deployment.apps/dualstack-operator created (server dry run)" in out
    admin.run("apply", "-k", str(MANIFESTS))
    admin.run(
        "wait",
        "--for=condition=Established",
        "crd/clusterkopfpeerings.kopf.dev",
        "crd/kopfpeerings.kopf.dev",
        "--timeout=60s",
    )
    return admin


def sa_kubeconfig(admin: Kubectl, cluster: LocalCluster, path: Path) -> Path:
    """A kubeconfig for the manifests' ServiceAccount."""
    return token_kubeconfig(admin, cluster, "dualstack-system", "dualstack-operator", path)


def test_restricted_pod_security_admits_the_deployment_and_rejects_violations(
    installed: Kubectl,
) -> None:
    ns = installed.in_namespace("dualstack-system")
    # The ReplicaSet's pods exist only if PodSecurity admission (restricted) let them in;
    # they stay Pending: this control plane has no nodes.
    pods = wait_for(
        "the Deployment's two pods",
        lambda: (lambda items: items if len(items) == 2 else None)(
            ns.get("pods", "", "-l", "app.kubernetes.io/name=dualstack-operator")["items"]
        ),
    )
    assert {p["status"]["phase"] for p in pods} == {"Pending"}
    err = ns.fails("run", "bad", "--image=example.invalid/bad", "--privileged")
    assert 'violates PodSecurity "restricted:latest"' in err
    labels = installed.get("namespace", "dualstack-system")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "configmaps"),  # only in its own namespace (the recreation journal)
        ("update", "services"),
        ("create", "pods"),
        ("delete", "dualstackpolicies.dualstack.dev"),
        ("update", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "serviceaccounts"),
        ("patch", "deployments.apps"),
        ("delete", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("*", "services"),
        ("*", "*"),
        # Only primaryFamilyChange: Recreate needs these (manifests/recreate grants them).
        ("delete", "services"),
        ("get", "services"),
    ],
)
def test_least_privilege_denies(installed: Kubectl, verb: str, resource: str) -> None:
    out = subprocess.run(
        [
            str(installed.binary),
            f"--kubeconfig={installed.kubeconfig}",
            "auth",
            "can-i",
            verb,
            resource,
            f"--as={SA}",
            "--all-namespaces",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.stdout.strip() == "no", (verb, resource, out.stdout, out.stderr)


def test_least_privilege_grants_what_the_code_uses(installed: Kubectl) -> None:
    for verb, resource in [
        ("patch", "services"),
        ("watch", "services"),
        ("patch", "dualstackpolicies.dualstack.dev --subresource=status"),
        ("get", "servicecidrs.networking.k8s.io"),
        ("watch", "servicecidrs.networking.k8s.io"),
        ("create", "events"),
        ("patch", "clusterkopfpeerings.kopf.dev"),
        ("update", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("delete", "mutatingwebhookconfigurations.admissionregistration.k8s.io/dualstack-operator"),
        ("create", "mutatingadmissionpolicies.admissionregistration.k8s.io"),
        ("update", "mutatingadmissionpolicybindings.admissionregistration.k8s.io"),
        ("delete", "validatingadmissionpolicies.admissionregistration.k8s.io"),
        ("list", "validatingadmissionpolicybindings.admissionregistration.k8s.io"),
    ]:
        args = ["auth", "can-i", verb, *resource.split(), f"--as={SA}", "--all-namespaces"]
        assert installed.run(*args).strip() == "yes", (verb, resource)
    rules = installed.get("clusterrole", "dualstack-operator")["rules"]
    assert not [r for r in rules if "*" in r["verbs"] or "*" in r["resources"]]


def _can(k: Kubectl, verb: str, resource: str, *scope: str) -> bool:
    out = subprocess.run(
        [str(k.binary), f"--kubeconfig={k.kubeconfig}", "auth", "can-i", verb, resource,
         f"--as={SA}", *(scope or ("--all-namespaces",))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip() == "yes"


def test_the_recreate_component_grants_delete_and_the_journal_only(installed: Kubectl) -> None:
    """Deleting Services, and the journal's ConfigMaps, come with manifests/recreate only."""
    journal = ("-n", "dualstack-system")
    assert not _can(installed, "delete", "services")
    assert not _can(installed, "create", "configmaps", *journal)
    installed.run("apply", "-k", str(MANIFESTS / "recreate"))
    try:
        assert _can(installed, "delete", "services")
        assert _can(installed, "get", "services")
        for verb in ("list", "create", "patch", "delete"):
            assert _can(installed, verb, "configmaps", *journal), verb
        assert not _can(installed, "create", "configmaps", "-n", "default"), "its namespace only"
    finally:
        installed.run("delete", "-k", str(MANIFESTS / "recreate"), "--ignore-not-found")


@pytest.mark.parametrize("admission", ["policy", "webhook"])
def test_operator_runs_as_its_service_account(
    admission: str, installed: Kubectl, dual_cluster: LocalCluster, dual: Kubectl, tmp_path: Path
) -> None:
    """Sufficient: reconcile, status, events, peering and admission, all as the SA."""
    kubeconfig = sa_kubeconfig(installed, dual_cluster, tmp_path / "sa.kubeconfig")
    dual.create(service("web", selector={"app": "web"}))
    operator = OperatorProcess(
        kubeconfig,
        [dual.namespace or ""],
        tmp_path / "op.log",
        (
            "--peering=dualstack-operator",
            f"--admission={admission}",
            "--webhook-address=127.0.0.1",
            f"--webhook-port={free_port()}",
        ),
    ).start()
    try:
        dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
        status = status_when(dual, lambda s: s.get("driftedServices") == 1)
        assert status["drift"][0]["reason"] == "PrimaryFamilyMismatch"
        assert dual.get("service", "web")["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
        reasons = {e["reason"] for e in dual.get("events")["items"]}
        assert {"Remediated", "DriftDetected"} <= reasons
        peering = dual.get("kopfpeerings.kopf.dev", "dualstack-operator")
        assert peering.get("status"), "kopf keeps its peer record as the SA"
        wait_for(
            f"a Service born IPv6-first through admission ({admission})",
            lambda: (
                dual.create(service(f"n{time.monotonic_ns() % 10**6}", selector={"app": "n"}))[
                    "spec"
                ]["ipFamilies"]
                == ["IPv6", "IPv4"]
            ),
        )
        log = operator.log()
        assert "403:" not in log, log[-2000:]  # (not "...,403" in a timestamp)
        assert "orbidden" not in log, log[-2000:]
    finally:
        operator.stop()


def test_recreate_needs_the_recreate_component_and_says_so(
    installed: Kubectl, dual_cluster: LocalCluster, dual: Kubectl, tmp_path: Path
) -> None:
    """As the default install's SA, a policy asking for Recreate reports the missing
    rights (one condition, one event) and nothing is deleted; with manifests/recreate
    applied, the same policy recreates the Service."""
    kubeconfig = sa_kubeconfig(installed, dual_cluster, tmp_path / "sa.kubeconfig")
    before = dual.create(service("web", selector={"app": "web"}))
    spec: dict[str, Any] = {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}
    args = ("--journal-namespace=dualstack-system",)
    operator = OperatorProcess(kubeconfig, [dual.namespace or ""], tmp_path / "a.log", args)
    operator.start()
    try:
        dual.create(dsp(primaryFamilyChange="Recreate", **spec))

        def recreate_condition(status: dict[str, Any]) -> dict[str, Any] | None:
            found = [c for c in status.get("conditions") or [] if c["type"] == "RecreateAvailable"]
            return found[0] if found else None

        status = status_when(dual, lambda s: recreate_condition(s) is not None)
        cond = recreate_condition(status)
        assert cond is not None
        assert (cond["status"], cond["reason"]) == ("False", "MissingRights")
        assert "delete services" in cond["message"]
        assert "manifests/recreate" in cond["message"], "says how to grant it"
        # The event is posted beside the status write, not before it.
        wait_for(
            "a MissingRights event",
            lambda: [e for e in dual.get("events")["items"] if e["reason"] == "MissingRights"],
        )
        assert dual.get("service", "web")["metadata"]["uid"] == before["metadata"]["uid"]
    finally:
        operator.stop()
    installed.run("apply", "-k", str(MANIFESTS / "recreate"))
    try:
        operator = OperatorProcess(kubeconfig, [dual.namespace or ""], tmp_path / "b.log", args)
        operator.start()
        try:
            wait_for(
                "web recreated IPv6-first",
                lambda: (
                    (dual.find("service", "web") or {}).get("spec", {}).get("ipFamilies")
                    == ["IPv6", "IPv4"]
                ),
                timeout=120,
            )
            status = status_when(
                dual, lambda s: (recreate_condition(s) or {}).get("status") == "True"
            )
            assert dual.get("service", "web")["metadata"]["uid"] != before["metadata"]["uid"]
        finally:
            operator.stop()
    finally:
        installed.run("delete", "-k", str(MANIFESTS / "recreate"), "--ignore-not-found")


def test_ha_one_active_replica_and_takeover(
    installed: Kubectl, dual_cluster: LocalCluster, dual: Kubectl, tmp_path: Path
) -> None:
    ns = dual.namespace or ""
    common = ("--peering=ha", "--peering-lifetime=5")

    def peered(*priorities: int) -> bool:
        found = dual.find("kopfpeerings.kopf.dev", "ha") or {}
        return sorted(p["priority"] for p in (found.get("status") or {}).values()) == [*priorities]

    high = OperatorProcess(
        dual_cluster.operator_kubeconfig, [ns], tmp_path / "high.log", (*common, "--priority=200")
    ).start()
    # The standby joins a running active replica, as a Deployment's second pod does: two
    # replicas started in the same instant may both act until each has seen the other
    # (kopf's peering is not a lease), which a slow start on a loaded machine shows.
    wait_for("the active replica's peer record", lambda: peered(200))
    low = OperatorProcess(
        dual_cluster.operator_kubeconfig, [ns], tmp_path / "low.log", (*common, "--priority=100")
    ).start()
    try:
        wait_for("both replicas' peer records", lambda: peered(100, 200))
        for i in range(5):
            dual.create(service(f"s{i}", selector={"app": "x"}))
        dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
        status_when(dual, lambda s: s.get("compliantServices") == 5)
        assert high.log().count("remediated") == 5
        assert "remediated" not in low.log(), "the standby never writes"
        assert peered(100, 200), "both peered"

        high.stop(signal.SIGKILL)
        killed = time.monotonic()
        dual.create(service("after", selector={"app": "x"}))
        wait_for(
            "the standby to take over and converge",
            lambda: dual.get("service", "after")["spec"]["ipFamilies"] == ["IPv4", "IPv6"],
            timeout=60,
        )
        takeover = time.monotonic() - killed
        print(f"\ntakeover after SIGKILL with --peering-lifetime=5: {takeover:.1f}s")
        assert "s/after remediated" in low.log() or "/after remediated" in low.log()
    finally:
        high.stop()
        low.stop()


def test_deployment_shape_for_ha(binaries: Path) -> None:
    import yaml

    out = subprocess.run(
        [str(binaries / "kubectl"), "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    deploy = docs[("Deployment", "dualstack-operator")]["spec"]
    assert deploy["replicas"] == 2
    assert deploy["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = deploy["template"]["spec"]
    (container,) = pod["containers"]
    assert "--peering=dualstack-operator" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert docs[("PodDisruptionBudget", "dualstack-operator")]["spec"]["minAvailable"] == 1


@pytest.mark.parametrize(
    ("component", "flag", "added"),
    [
        ("native-admission", "--admission=policy", set()),
        (
            "admission",
            "--admission=webhook",
            {"Certificate/dualstack-operator-webhook", "Service/dualstack-operator-webhook"},
        ),
        (
            "metrics-auth",
            "--metrics-secure",
            {
                "ClusterRoleBinding/dualstack-operator-auth-delegator",
                "ClusterRole/dualstack-operator-metrics-reader",
            },
        ),
    ],
)
def test_components_render(
    component: str, flag: str, added: set[str], binaries: Path, tmp_path: Path
) -> None:
    """An overlay as the README shows it: the native path needs no certificate or Service."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = Path(os.path.relpath(MANIFESTS, overlay))
    (overlay / "kustomization.yaml").write_text(
        f"resources: [{base}]\ncomponents: [{base / component}]\n"
    )
    plain = Kubectl(binaries / "kubectl", tmp_path / "unused")
    out = plain.run("kustomize", str(overlay))
    docs = [d for d in yaml.safe_load_all(out) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert flag in args
    option = flag.split("=")[0]
    assert [a for a in args if a.split("=")[0] == option] == [flag]
    if component == "metrics-auth":
        probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        assert probe["httpGet"]["scheme"] == "HTTPS"

    def names(objects: list[dict[str, Any]]) -> set[str]:
        return {f"{d['kind']}/{d['metadata']['name']}" for d in objects if d["kind"] != "Issuer"}

    without = [d for d in yaml.safe_load_all(plain.run("kustomize", str(MANIFESTS))) if d]
    assert names(docs) - names(without) == added
