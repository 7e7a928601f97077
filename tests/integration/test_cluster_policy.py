"""ClusterDualStackPolicy on the real control plane: namespaces by label, own policies win."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from localcluster import LocalCluster, free_port
from support.kube import Kubectl, dsp, families, service, wait_for
from support.operator_proc import OperatorProcess

StartOperator = Callable[..., OperatorProcess]


def cdsp(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dualstack.dev/v1alpha1",
        "kind": "ClusterDualStackPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture
def namespaces(dual: Kubectl) -> Iterator[list[Kubectl]]:
    """Three more namespaces; the first two labelled for a cluster policy."""
    admin = Kubectl(dual.binary, dual.kubeconfig)
    base = dual.namespace or ""
    names = [f"{base[:50]}-{i}" for i in range(3)]
    for i, name in enumerate(names):
        admin.run("create", "namespace", name)
        if i < 2:
            admin.run("label", "namespace", name, f"migrate={base[:50]}")
    try:
        yield [admin.in_namespace(n) for n in names]
    finally:
        for name in names:
            admin.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.mark.parametrize("mechanism", ["policy", "webhook"])
def test_a_cluster_policy_governs_labelled_namespaces_and_an_own_policy_wins(
    mechanism: str,
    dual: Kubectl,
    dual_cluster: LocalCluster,
    namespaces: list[Kubectl],
    start_operator: StartOperator,
) -> None:
    admin = Kubectl(dual.binary, dual.kubeconfig)
    labelled_a, labelled_b, other = namespaces
    for k in namespaces:
        k.create(service("web", selector={"app": "web"}))
    name = f"migrate-{uuid.uuid4().hex[:6]}"
    selector = {"matchLabels": {"migrate": (dual.namespace or "")[:50]}}
    operator = OperatorProcess(
        dual_cluster.operator_kubeconfig,
        [k.namespace or "" for k in namespaces],
        dual_cluster.state_dir / f"{name}.log",
        (
            "--metrics-port=0",
            f"--admission={mechanism}",
            "--webhook-address=127.0.0.1",
            f"--webhook-port={free_port()}",
        ),
    )
    operator.start()
    try:
        admin.create(cdsp(name, ipFamilyPolicy="PreferDualStack", namespaceSelector=selector))
        wait_for(
            "both labelled namespaces dual-stack",
            lambda: all(
                families(k, "web") == ("PreferDualStack", ["IPv4", "IPv6"])
                for k in (labelled_a, labelled_b)
            ),
        )
        assert families(other, "web") == ("SingleStack", ["IPv4"]), "not labelled: untouched"

        status = wait_for(
            "the cluster policy's totals",
            lambda: (
                lambda s: (
                    s
                    if s.get("governedNamespaces") == 2 and s.get("compliantServices") == 2
                    else None
                )
            )(admin.get("cdsp", name).get("status") or {}),
        )
        assert status["matchedServices"] == 2
        assert status["admission"] == (
            "MutatingAdmissionPolicy" if mechanism == "policy" else "Webhook"
        )
        header, row = admin.run("get", "cdsp", name).splitlines()
        assert header.split()[:4] == ["NAME", "POLICY", "FAMILIES", "MODE"]
        assert "NAMESPACES" in header.split()
        assert row.split()[header.split().index("NAMESPACES")] == "2"

        # New Services in a governed namespace are born compliant (either admission path).
        born = wait_for(
            "a Service born dual-stack under the cluster policy",
            lambda: (lambda svc: svc if svc["spec"]["ipFamilies"] == ["IPv4", "IPv6"] else None)(
                labelled_b.create(service(f"new{uuid.uuid4().hex[:5]}", selector={"app": "n"}))
            ),
        )
        assert born["spec"]["ipFamilyPolicy"] == "PreferDualStack"

        # A namespace's own policy wins over the cluster's.
        labelled_a.create(dsp(ipFamilyPolicy="SingleStack"))
        wait_for(
            "the namespace's own policy to govern it",
            lambda: families(labelled_a, "web") == ("SingleStack", ["IPv4"]),
        )
        wait_for(
            "the cluster policy to count one namespace",
            lambda: (admin.get("cdsp", name).get("status") or {}).get("governedNamespaces") == 1,
        )
        # Unlabelling a namespace takes it out of the cluster policy's hands (left as is).
        admin.run("label", "namespace", labelled_b.namespace or "", "migrate-")
        wait_for(
            "the cluster policy to govern no namespace",
            lambda: (admin.get("cdsp", name).get("status") or {}).get("governedNamespaces") == 0,
        )
        assert families(labelled_b, "web") == ("PreferDualStack", ["IPv4", "IPv6"])
    finally:
        operator.stop()
        admin.run("delete", "cdsp", name, "--ignore-not-found")
