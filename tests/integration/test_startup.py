"""Startup against a real API server that lacks what the operator needs: RBAC, the
CRDs. One clear line and exit 1 for what only an administrator can fix; for the CRDs,
which a GitOps tool may apply a moment later, alive but unready until they come."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from localcluster import LocalCluster
from support.kube import Kubectl, dsp, service, status_when, token_kubeconfig, wait_for
from support.operator_proc import OperatorProcess

StartOperator = Callable[..., OperatorProcess]
CRDS = ("dualstackpolicies.dualstack.dev", "clusterdualstackpolicies.dualstack.dev")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def test_missing_rbac_is_one_clear_line_and_exit_1(
    dual: Kubectl, dual_cluster: LocalCluster, tmp_path: Path
) -> None:
    ns = dual.namespace or ""
    admin = Kubectl(dual.binary, dual.kubeconfig)
    dual.run("create", "serviceaccount", "no-rights")
    # Some rights, not all: reading Services but not patching them or the policies.
    dual.run("create", "role", "reader", "--verb=list,watch", "--resource=services")
    dual.run("create", "rolebinding", "reader", "--role=reader", f"--serviceaccount={ns}:no-rights")
    config = token_kubeconfig(admin, dual_cluster, ns, "no-rights", tmp_path / "kubeconfig")
    out = subprocess.run(
        [sys.executable, "-m", "dualstack_operator", "run", "--namespace", ns],
        env={**os.environ, "KUBECONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    line = lines[0]
    assert line.startswith("dualstack-operator: missing RBAC: the operator's identity may not ")
    assert f"patch services in namespace {ns}" in line
    assert f"patch dualstackpolicies.dualstack.dev/status in namespace {ns}" in line
    assert f"list services in namespace {ns}" not in line, "a right it has is not reported"
    assert "kubectl apply -k manifests/" in line
    assert "Traceback" not in out.stderr


def test_missing_crds_wait_alive_and_unready_then_start(
    faulty: Kubectl, fault_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    admin = Kubectl(faulty.binary, faulty.kubeconfig)
    crds = [admin.get("crd", name) for name in CRDS]
    admin.run("delete", "crd", *CRDS)
    try:
        operator = start_operator(fault_cluster, faulty)
        hint = "waiting for the CRD dualstackpolicies.dualstack.dev: kubectl apply -k crds/"
        wait_for("the waiting line", lambda: hint in operator.log())
        liveness = f"http://127.0.0.1:{operator.liveness_port}/healthz"
        readiness = f"http://127.0.0.1:{operator.metrics_port}/readyz"
        assert _status(liveness) == 200, "alive: no restart loop while it waits"
        assert _status(readiness) == 503, "not ready"
        assert operator.alive()
    finally:
        for crd in crds:
            for key in ("resourceVersion", "uid", "creationTimestamp", "generation"):
                crd["metadata"].pop(key, None)
            crd.pop("status", None)
            admin.run("create", "-f", "-", stdin=json.dumps(crd))
        admin.run("wait", "--for=condition=Established", "--timeout=60s", "crd", *CRDS)
    wait_for("ready once the CRDs are there", lambda: _status(readiness) == 200, timeout=60)
    faulty.create(dsp(ipFamilyPolicy="PreferDualStack"))
    faulty.create(service("web"))
    status_when(faulty, lambda s: s.get("compliantServices") == 1)
    assert "Traceback" not in operator.log()
