"""The local control plane itself: real components, working auth, clean teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster import REPO, LocalCluster
from support.kube import Kubectl, KubectlError, service, wait_for


def test_version_reports_the_real_release(dual_cluster: LocalCluster, binaries: Path) -> None:
    kubectl = Kubectl(binaries / "kubectl", dual_cluster.kubeconfig)
    version = json.loads(kubectl.run("get", "--raw", "/version"))
    assert version["gitVersion"].startswith("v1.3")
    assert not version["gitVersion"].startswith("v0.0.0")
    assert int(version["minor"]) >= 35


def test_kubernetes_service_cidr_lists_both_cidrs(
    dual_cluster: LocalCluster, binaries: Path
) -> None:
    kubectl = Kubectl(binaries / "kubectl", dual_cluster.kubeconfig)
    cidr = kubectl.get("servicecidrs.networking.k8s.io", "kubernetes")
    assert cidr["spec"]["cidrs"] == ["10.96.0.0/16", "fd00:10:96::/112"]


def test_single_stack_service_cidr_lists_one_cidr(
    single_cluster: LocalCluster, binaries: Path
) -> None:
    kubectl = Kubectl(binaries / "kubectl", single_cluster.kubeconfig)
    cidr = kubectl.get("servicecidrs.networking.k8s.io", "kubernetes")
    assert cidr["spec"]["cidrs"] == ["10.96.0.0/16"]


def test_endpointslice_controller_makes_one_slice_per_family(dual: Kubectl) -> None:
    """kube-controller-manager runs: a selector Service gets an EndpointSlice per family."""
    dual.create(service("web", selector={"app": "web"}, ipFamilyPolicy="PreferDualStack"))

    def address_types() -> list[str] | None:
        slices = dual.get("endpointslices", "", "-l", "kubernetes.io/service-name=web")["items"]
        types = sorted(s["addressType"] for s in slices)
        return types if len(types) == 2 else None

    assert wait_for("an EndpointSlice per family", address_types) == ["IPv4", "IPv6"]


def test_garbage_collector_deletes_dependents(dual: Kubectl) -> None:
    owner = dual.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    dual.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
        }
    )
    dual.run("delete", "configmap", "owner")
    wait_for(
        "the dependent to be collected",
        lambda: not dual.run("get", "configmap", "dependent", "--ignore-not-found").strip(),
    )


def test_service_account_tokens_are_issued_and_rbac_is_enforced(
    dual: Kubectl, dual_cluster: LocalCluster, tmp_path: Path
) -> None:
    """TokenRequest works and the RBAC authorizer judges the token's identity."""
    dual.run("create", "serviceaccount", "robot")
    token = dual.run("create", "token", "robot", "--duration=10m").strip()
    assert token.count(".") == 2, "a JWT"

    as_robot = [
        str(dual.binary),
        f"--server={dual_cluster.server}",
        f"--certificate-authority={dual_cluster.state_dir / 'pki' / 'ca.crt'}",
        f"--token={token}",
        f"--namespace={dual.namespace}",
    ]
    who = json.loads(
        subprocess.run(
            [*as_robot, "auth", "whoami", "-o", "json"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert who["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{dual.namespace}:robot"
    )
    denied = subprocess.run(
        [*as_robot, "get", "services"], capture_output=True, text=True, check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr

    dual.run("create", "role", "read-svc", "--verb=list", "--resource=services")
    dual.run(
        "create",
        "rolebinding",
        "robot-read",
        "--role=read-svc",
        f"--serviceaccount={dual.namespace}:robot",
    )
    wait_for(
        "RBAC to allow the robot",
        lambda: (
            subprocess.run(
                [*as_robot, "get", "services"], capture_output=True, check=False
            ).returncode
            == 0
        ),
    )


def test_default_service_account_is_created_by_the_controller_manager(dual: Kubectl) -> None:
    wait_for(
        "the default ServiceAccount",
        lambda: dual.run("get", "serviceaccount", "default", "--ignore-not-found").strip(),
    )


# --- the launcher ---------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_make_cluster_cli_restarts_cleanly_and_stops_by_pid(tmp_path: Path, binaries: Path) -> None:
    """`up` twice replaces the first control plane; `down` stops exactly what `up` started."""
    state = tmp_path / "cluster"
    cli = [sys.executable, "-m", "localcluster"]
    env = {
        **os.environ,
        "PATH": f"{binaries}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO / "hack"),
    }

    def up() -> list[int]:
        out = subprocess.run(
            [*cli, "up", f"--state-dir={state}", "--families=ipv6,ipv4"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        assert "export KUBECONFIG=" in out
        return [e["pid"] for e in json.loads((state / "pids.json").read_text())]

    first = up()
    try:
        assert all(_alive(p) for p in first)
        second = up()
        assert not any(_alive(p) for p in first), "the first control plane was stopped"
        assert all(_alive(p) for p in second)
        kubectl = Kubectl(binaries / "kubectl", state / "kubeconfig")
        cidr = kubectl.get("servicecidrs.networking.k8s.io", "kubernetes")
        assert cidr["spec"]["cidrs"] == ["fd00:10:96::/112", "10.96.0.0/16"]
        down = subprocess.run(
            [*cli, "down", f"--state-dir={state}"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        assert "kube-apiserver" in down
        assert not any(_alive(p) for p in second)
        with pytest.raises(KubectlError):
            kubectl.run("get", "--raw", "/readyz", "--request-timeout=2s")
    finally:
        for pid in first + [e["pid"] for e in _recorded(state)]:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)


def _recorded(state: Path) -> list[dict[str, int]]:
    record = state / "pids.json"
    return json.loads(record.read_text()) if record.exists() else []


def test_killed_test_process_takes_its_control_plane_with_it(
    tmp_path: Path, binaries: Path
) -> None:
    """A test session killed without teardown (SIGKILL) leaves no control plane behind."""
    script = f"""
import json, sys, time
sys.path.insert(0, {str(REPO / "hack")!r})
from pathlib import Path
from localcluster import LocalCluster
cluster = LocalCluster(Path({str(tmp_path / "state")!r}), ("ipv4",), Path({str(binaries)!r}))
cluster.start(die_with_parent=True)
print(json.dumps([p.pid for p in cluster.supervisor]), flush=True)
time.sleep(600)
"""
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pids: list[int] = json.loads(owner.stdout.readline())
        assert len(pids) == 3
        assert all(_alive(p) for p in pids)
    finally:
        owner.kill()
        owner.wait()
    wait_for("the orphaned control plane to exit", lambda: not any(_alive(p) for p in pids))


def test_single_stack_cluster_gaining_a_family_does_not_upgrade_services(
    tmp_path: Path, binaries: Path
) -> None:
    """kubernetes#101681: existing Services stay single-stack until their families change."""
    cluster = LocalCluster(tmp_path / "migrating", ("ipv4",), binaries)
    cluster.start(die_with_parent=True)
    try:
        kubectl = Kubectl(binaries / "kubectl", cluster.kubeconfig, "default")
        kubectl.create(service("old", selector={"app": "old"}, ipFamilyPolicy="PreferDualStack"))
        cluster.reconfigure(("ipv4", "ipv6"))

        def families() -> list[str]:
            fams: list[str] = kubectl.get("service", "old")["spec"]["ipFamilies"]
            return fams

        # The default ServiceCIDR follows the new flags (single -> dual is upgraded in place)...
        wait_for(
            "the default ServiceCIDR to list both CIDRs",
            lambda: (
                kubectl.get("servicecidrs.networking.k8s.io", "kubernetes")["spec"]["cidrs"]
                == ["10.96.0.0/16", "fd00:10:96::/112"]
            ),
        )
        # ...but the existing Service is not upgraded.
        assert families() == ["IPv4"]
        before = kubectl.get("service", "old")["metadata"]["resourceVersion"]
        after = kubectl.patch("service", "old", {"spec": {"ipFamilyPolicy": "PreferDualStack"}})
        assert after["metadata"]["resourceVersion"] == before, "re-sending the policy: no-op"
        assert families() == ["IPv4"]

        upgraded = kubectl.patch("service", "old", {"spec": {"ipFamilies": ["IPv4", "IPv6"]}})
        assert upgraded["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
        assert len(upgraded["spec"]["clusterIPs"]) == 2

        # New Services get both families at once after the migration.
        fresh = kubectl.create(
            service("new", selector={"app": "n"}, ipFamilyPolicy="PreferDualStack")
        )
        assert fresh["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
    finally:
        cluster.stop()
