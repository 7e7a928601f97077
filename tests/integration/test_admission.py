"""Services born compliant, on both admission paths the operator offers.

``policy``: native MutatingAdmissionPolicies that the real API server applies itself
(v1.36+). ``webhook``: the real API server calls the operator's webhook (older
clusters). Every behaviour of admission is checked on both.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dualstack_operator.admission.cel import PARAMETER_NAME, POLICY_NAME
from dualstack_operator.admission.configuration import CONFIGURATION_NAME
from localcluster import REPO, LocalCluster, free_port
from localcluster.audit import service_patches
from support.kube import Kubectl, dsp, service, status_when, wait_for
from support.operator_proc import OperatorProcess, after_next_pass

StartOperator = Callable[..., OperatorProcess]
MECHANISMS = ["policy", "webhook"]
NATIVE_KINDS = (
    "mutatingadmissionpolicy",
    "mutatingadmissionpolicybinding",
    "validatingadmissionpolicy",
    "validatingadmissionpolicybinding",
)


def start_with_webhook(
    start_operator: StartOperator, cluster: LocalCluster, k: Kubectl
) -> OperatorProcess:
    operator = start_operator(
        cluster,
        k,
        "--admission=webhook",
        "--webhook-address=127.0.0.1",
        f"--webhook-port={free_port()}",
    )
    admin = Kubectl(k.binary, k.kubeconfig)

    def configured() -> bool:
        out = admin.run(
            "get",
            "mutatingwebhookconfiguration",
            CONFIGURATION_NAME,
            "--ignore-not-found",
            "-o",
            "json",
        )
        if not out.strip():
            return False
        url = json.loads(out)["webhooks"][0]["clientConfig"].get("url", "")
        return f":{_port(operator)}/" in url

    wait_for("the webhook configuration to point at this operator", configured)
    return operator


def start_with(
    mechanism: str, start_operator: StartOperator, cluster: LocalCluster, k: Kubectl
) -> OperatorProcess:
    if mechanism == "webhook":
        return start_with_webhook(start_operator, cluster, k)
    return start_operator(cluster, k, "--admission=policy")


def _port(operator: OperatorProcess) -> str:
    return next(a.split("=", 1)[1] for a in operator.args if a.startswith("--webhook-port="))


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns() % 10**7}"


def wait_until_admission_shapes(k: Kubectl, **labels: str) -> None:
    """Admission sees a new policy a moment after it exists (the webhook once the
    operator indexed it; native policies once the operator wrote them and the API
    server loaded them): probe until it acts."""

    def shaped() -> bool:
        probe = service(unique("probe"), selector={"app": "probe"})
        probe["metadata"]["labels"] = labels
        return bool(k.create(probe)["spec"]["ipFamilies"] == ["IPv6", "IPv4"])

    wait_for("admission to shape new Services", shaped)


def born(
    k: Kubectl, name: str, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    """Creates a Service the way a chart would (no family fields), returns what was stored."""
    manifest = service(name, selector={"app": name}, **spec)
    if labels:
        manifest["metadata"]["labels"] = labels
    return dict(k.create(manifest))


def admission_parameter(k: Kubectl) -> dict[str, Any] | None:
    """This namespace's DualStackAdmission (the native policies' parameter), if any."""
    out = k.run("get", "dualstackadmission", PARAMETER_NAME, "--ignore-not-found", "-o", "json")
    return json.loads(out) if out.strip() else None


def shared_objects(k: Kubectl) -> dict[str, Any]:
    """The shared native admission objects that exist, by kind."""
    admin = Kubectl(k.binary, k.kubeconfig)
    found = {}
    for kind in NATIVE_KINDS:
        out = admin.run("get", kind, POLICY_NAME, "--ignore-not-found", "-o", "json")
        if out.strip():
            found[kind] = json.loads(out)
    return found


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_service_is_born_ipv6_first_and_never_written_again(
    mechanism: str, dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with(mechanism, start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    status_when(dual, lambda s: "matchedServices" in s)

    # Admission may act a moment after the policy exists: the first Service created
    # once it does is the one judged.
    def created_ipv6_first() -> dict[str, Any] | None:
        svc = born(dual, unique("web"))
        return svc if svc["spec"]["ipFamilies"] == ["IPv6", "IPv4"] else None

    svc = wait_for("a Service born IPv6-first", created_ipv6_first)
    spec = svc["spec"]
    assert spec["ipFamilyPolicy"] == "RequireDualStack"
    assert ":" in spec["clusterIP"], "the primary ClusterIP is IPv6"
    assert ":" in spec["clusterIPs"][0]
    assert len(spec["clusterIPs"]) == 2

    name = svc["metadata"]["name"]
    rv = svc["metadata"]["resourceVersion"]
    # The status counts every Service only after a pass that left no write pending:
    # once it counts this one as compliant, the reconciler has judged it.
    total = len(dual.get("services")["items"])
    status_when(
        dual,
        lambda s: (
            s.get("matchedServices") == total
            and not any(d["service"] == name for d in s.get("drift") or [])
        ),
    )
    assert dual.get("service", name)["metadata"]["resourceVersion"] == rv
    assert name not in service_patches(dual_cluster.audit.writes(dual.namespace or ""))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_reconciler_and_admission_agree(
    mechanism: str, dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with(mechanism, start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv6", "IPv4"]))
    status_when(dual, lambda s: "matchedServices" in s)
    wait_until_admission_shapes(dual)
    ours = []
    for i in range(5):
        ours += [
            born(dual, f"svc{i}")["metadata"]["name"],
            born(dual, f"hl{i}", clusterIP="None")["metadata"]["name"],
            born(dual, f"np{i}", type="NodePort")["metadata"]["name"],
        ]
    ours.append(
        born(dual, "own", ipFamilyPolicy="SingleStack", ipFamilies=["IPv4"])["metadata"]["name"]
    )
    total = len(dual.get("services")["items"])
    status = status_when(dual, lambda s: s.get("matchedServices") == total)
    # (Probes created before admission acted are the reconciler's, and may drift.)
    assert not {d["service"] for d in status.get("drift") or []} & set(ours)
    patched = service_patches(dual_cluster.audit.writes(dual.namespace or ""))
    assert not set(patched) & set(ours), patched


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_status_names_the_admission_path(
    mechanism: str, dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with(mechanism, start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
    expected = "MutatingAdmissionPolicy" if mechanism == "policy" else "Webhook"
    status_when(dual, lambda s: s.get("admission") == expected)
    table = dual.run("get", "dsp", "default")
    assert "ADMISSION" in table.splitlines()[0]
    assert expected in table.splitlines()[1]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_namespace_without_policy_is_untouched(
    mechanism: str, dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with(mechanism, start_operator, dual_cluster, dual)
    svc = born(dual, "plain")
    assert (svc["spec"]["ipFamilyPolicy"], svc["spec"]["ipFamilies"]) == ("SingleStack", ["IPv4"])
    assert admission_parameter(dual) is None


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_audit_policy_warns_and_changes_nothing(
    mechanism: str, dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with(mechanism, start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"], mode="Audit"))
    expected = "ValidatingAdmissionPolicy" if mechanism == "policy" else "Webhook"
    status_when(dual, lambda s: s.get("admission") == expected)

    def warned() -> str | None:
        proc = dual.run_full(
            "create",
            "-f",
            "-",
            "-o",
            "json",
            stdin=json.dumps(service(unique("audited"), selector={"app": "a"})),
        )
        stored = json.loads(proc.stdout)
        assert stored["spec"]["ipFamilies"] == ["IPv4"], "Audit never mutates"
        return proc.stderr if "would set" in proc.stderr else None

    warning = wait_for("an admission warning", warned)
    assert "Warning:" in warning
    assert "DualStackPolicy default (Audit) would set" in warning
    assert "ipFamilyPolicy=RequireDualStack ipFamilies=IPv6,IPv4" in warning
    if mechanism == "policy":
        param = admission_parameter(dual)
        assert param is not None
        assert set(param["spec"]) == {"policies", "warnings"}, (
            "Audit compiles to a warning, never to a mutation"
        )


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_opted_out_and_external_name_pass_through(
    mechanism: str, dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with(mechanism, start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    status_when(dual, lambda s: "matchedServices" in s)
    wait_until_admission_shapes(dual)
    opted = service("legacy", selector={"app": "l"})
    opted["metadata"]["annotations"] = {"dualstack.dev/ignore": "true"}
    assert dual.create(opted)["spec"]["ipFamilies"] == ["IPv4"]
    ext = dual.create(service("ext", type="ExternalName", externalName="example.com"))
    assert "ipFamilies" not in ext["spec"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_services_outside_the_selector_are_untouched(
    mechanism: str, dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with(mechanism, start_operator, dual_cluster, dual)
    selector = {
        "matchLabels": {"tier": "web"},
        "matchExpressions": [{"key": "legacy", "operator": "DoesNotExist"}],
    }
    dual.create(
        dsp(
            ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"], serviceSelector=selector
        )
    )
    status_when(dual, lambda s: "matchedServices" in s)
    wait_until_admission_shapes(dual, tier="web")
    assert born(dual, "web", {"tier": "web"})["spec"]["ipFamilies"] == ["IPv6", "IPv4"]
    assert born(dual, "db", {"tier": "db"})["spec"]["ipFamilies"] == ["IPv4"]
    assert born(dual, "bare")["spec"]["ipFamilies"] == ["IPv4"]
    old = born(dual, "old", {"tier": "web", "legacy": "yes"})
    assert old["spec"]["ipFamilies"] == ["IPv4"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_conflicting_policies_the_oldest_decides(
    mechanism: str, dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with(mechanism, start_operator, dual_cluster, dual)
    # Named so that name order and age order disagree: age must decide.
    older = dual.create(
        dsp("z-older", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"])
    )
    created = older["metadata"]["creationTimestamp"]
    wait_for(
        "the API server's clock to pass the older policy's second",
        lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) > created,
    )
    dual.create(dsp("a-newer", ipFamilyPolicy="SingleStack", ipFamilies=["IPv4"]))
    newer = dual.get("dsp", "a-newer")
    assert newer["metadata"]["creationTimestamp"] > created
    status_when(dual, lambda s: "matchedServices" in s, name="a-newer")
    wait_until_admission_shapes(dual)
    svc = born(dual, "contested")
    assert (svc["spec"]["ipFamilyPolicy"], svc["spec"]["ipFamilies"]) == (
        "RequireDualStack",
        ["IPv6", "IPv4"],
    )
    status = status_when(
        dual,
        lambda s: any(d["service"] == "contested" for d in s.get("drift") or []),
        name="a-newer",
    )
    assert {d["reason"] for d in status["drift"] if d["service"] == "contested"} == {"Conflict"}
    # (Probes created before admission acted are the reconciler's to patch.)
    assert "contested" not in service_patches(dual_cluster.audit.writes(dual.namespace or ""))


def test_born_compliant_while_the_operator_is_stopped(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """The API server applies native policies itself: no operator in the admission path."""
    operator = start_with("policy", start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    wait_until_admission_shapes(dual)
    assert operator.stop() == 0
    svc = born(dual, "while-stopped")
    assert (svc["spec"]["ipFamilyPolicy"], svc["spec"]["ipFamilies"]) == (
        "RequireDualStack",
        ["IPv6", "IPv4"],
    )
    assert ":" in svc["spec"]["clusterIP"]


def test_native_objects_follow_the_policies_and_go_with_them(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with("policy", start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    wait_until_admission_shapes(dual)
    param = admission_parameter(dual)
    assert param is not None
    assert set(param["spec"]) == {"policies", "mutations"}
    assert set(shared_objects(dual)) == set(NATIVE_KINDS)

    # A changed policy changes what new Services get.
    dual.patch("dsp", "default", {"spec": {"ipFamilies": ["IPv4", "IPv6"]}})
    wait_for(
        "new Services to follow the changed policy",
        lambda: born(dual, unique("after"))["spec"]["ipFamilies"] == ["IPv4", "IPv6"],
    )
    # An Audit policy beside it brings its warnings.
    dual.create(dsp("watch", ipFamilyPolicy="SingleStack", mode="Audit"))
    wait_for(
        "the Audit policy's warnings",
        lambda: "warnings" in ((admission_parameter(dual) or {}).get("spec") or {}),
    )

    dual.run("delete", "dsp", "default", "watch")
    wait_for("the parameter to go with the policies", lambda: admission_parameter(dual) is None)
    # The API server drops a deleted parameter a moment later (its informer).
    wait_for(
        "new Services to get the server's defaults again",
        lambda: born(dual, unique("after-delete"))["spec"]["ipFamilies"] == ["IPv4"],
    )
    writes = dual_cluster.audit.parameter_writes(dual.namespace or "")
    assert writes["create"] == 1
    assert writes["delete"] == 1


def test_objects_of_a_policy_deleted_while_stopped_go_at_the_next_start(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """With no policy left there is no policy event at all: the start must still look."""
    operator = start_with("policy", start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    wait_until_admission_shapes(dual)
    operator.stop()
    dual.run("delete", "dsp", "default")
    start_with("policy", start_operator, dual_cluster, dual)
    wait_for("the orphaned parameter to be removed", lambda: admission_parameter(dual) is None)


def test_native_objects_are_harmless_and_quiet(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    operator = start_with("policy", start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    wait_until_admission_shapes(dual)
    objects = shared_objects(dual)
    policy = objects["mutatingadmissionpolicy"]
    assert policy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dualstack-operator"
    assert policy["spec"]["failurePolicy"] == "Ignore", "never blocks Service creation"
    assert policy["spec"]["matchConstraints"]["resourceRules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["services"],
            "scope": "Namespaced",
        }
    ]
    binding = objects["mutatingadmissionpolicybinding"]
    # One binding for every namespace: those without a parameter cost one lookup.
    assert binding["spec"]["paramRef"] == {
        "name": PARAMETER_NAME,
        "parameterNotFoundAction": "Allow",
    }
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", "kube-public", "kube-node-lease"],
            }
        ]
    }
    param = admission_parameter(dual)
    assert param is not None
    assert param["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dualstack-operator"
    written = dual_cluster.audit.parameter_writes(dual.namespace or "")
    assert sum(written.values()) == 1, written

    # Steady state: restarts and passes write nothing more.
    shared_before = {k: v["metadata"]["resourceVersion"] for k, v in objects.items()}
    operator.stop()
    operator = start_with("policy", start_operator, dual_cluster, dual)
    after_next_pass(operator, lambda: born(dual, "nudge"))
    assert dual_cluster.audit.parameter_writes(dual.namespace or "") == written
    after = {k: v["metadata"]["resourceVersion"] for k, v in shared_objects(dual).items()}
    assert after == shared_before


def test_switching_admission_off_removes_the_native_objects(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    operator = start_with("policy", start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    wait_until_admission_shapes(dual)
    operator.stop()
    off = start_operator(dual_cluster, dual)  # no --admission
    wait_for("the parameter to be removed", lambda: admission_parameter(dual) is None)
    status_when(dual, lambda s: "matchedServices" in s and "admission" not in s)
    assert "ADMISSION" in dual.run("get", "dsp").splitlines()[0]
    off.stop()


def test_auto_prefers_native_policies_where_served(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    operator = start_operator(dual_cluster, dual, "--admission")
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    status_when(dual, lambda s: s.get("admission") == "MutatingAdmissionPolicy")
    assert "admission: native MutatingAdmissionPolicies" in operator.log()
    assert admission_parameter(dual) is not None


def test_webhook_is_configured_to_be_harmless(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    start_with_webhook(start_operator, dual_cluster, dual)
    admin = Kubectl(dual.binary, dual.kubeconfig)
    (hook,) = admin.get("mutatingwebhookconfiguration", CONFIGURATION_NAME)["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] <= 5
    assert hook["sideEffects"] == "None"
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["services"],
            "scope": "Namespaced",
        }
    ]
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == [dual.namespace]
    assert {c["name"] for c in hook["matchConditions"]} == {"not-external-name", "not-opted-out"}
    assert hook["clientConfig"]["caBundle"]


def test_operator_down_never_blocks_service_creation(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    operator = start_with_webhook(start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    operator.stop()
    # The configuration still points at the stopped operator.
    svc = dual.create(service("while-down", selector={"app": "x"}), "--request-timeout=10s")
    assert svc["spec"]["ipFamilies"] == ["IPv4"], "created, with the server's defaults"


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_chart_that_pins_its_cluster_ip_installs_into_an_ipv6_first_namespace(
    mechanism: str,
    dual: Kubectl,
    dual_cluster: LocalCluster,
    start_operator: StartOperator,
    helm: Path,
    tmp_path: Path,
) -> None:
    """A DNS server's chart pins `clusterIP:`: admission keeps that address's family as the
    primary (it never refuses the install), and the reconciler reports the rest."""
    start_with(mechanism, start_operator, dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    wait_until_admission_shapes(dual)
    address = free_service_address(dual, "10.96.0.0/16")
    chart = REPO / "tests" / "fixtures" / "pinned-chart"
    env = {**os.environ, "KUBECONFIG": str(dual.kubeconfig), "HOME": str(tmp_path)}
    argv = [str(helm), "install", "dns", str(chart), "-n", dual.namespace or ""]
    installed = subprocess.run(
        [*argv, "--set", f"clusterIP={address}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    spec = dual.get("service", "dns")["spec"]
    assert spec["clusterIP"] == address
    assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("RequireDualStack", ["IPv4", "IPv6"])
    assert len(spec["clusterIPs"]) == 2
    status = status_when(dual, lambda s: any(d["service"] == "dns" for d in s.get("drift") or []))
    entry = next(d for d in status["drift"] if d["service"] == "dns")
    assert entry["reason"] == "PrimaryFamilyMismatch"
    assert "recreate" in entry["message"]
    assert "IPv6 primary" in entry["message"]
    assert "dns" not in service_patches(dual_cluster.audit.writes(dual.namespace or ""))


def free_service_address(k: Kubectl, cidr: str) -> str:
    """An address of ``cidr`` no Service holds now (a server-side dry run says so)."""
    network = ipaddress.ip_network(cidr)
    for _ in range(20):
        address = str(network[secrets.randbelow(network.num_addresses - 512) + 256])
        probe = service(unique("free"), clusterIP=address)
        if not k.stderr_of("create", "--dry-run=server", "-f", "-", stdin=json.dumps(probe)):
            return address
    raise AssertionError(f"no free address in {cidr}")


def test_an_upgrade_from_per_namespace_objects_leaves_no_window(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """An operator of this version finds the per-namespace objects the previous one wrote
    (tests/fixtures/admission-0.1.0.json, made by it) and removes them only once the
    shared policy serves: every Service created all along is born compliant."""
    namespace = dual.namespace or ""
    admin = Kubectl(dual.binary, dual.kubeconfig)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))
    legacy = (REPO / "tests" / "fixtures" / "admission-0.1.0.json").read_text()
    admin.run("apply", "-f", "-", stdin=legacy.replace("NAMESPACE", namespace))
    legacy_name = f"dualstack.dev.{namespace}"
    wait_until_admission_shapes(dual)  # the previous version's objects serve

    born_as: list[tuple[str, Any, Any]] = []
    stop = threading.Event()

    def create_all_along() -> None:
        i = 0
        while not stop.is_set():
            spec = born(dual, f"up{i}")["spec"]
            born_as.append((f"up{i}", spec["ipFamilyPolicy"], spec["ipFamilies"]))
            i += 1

    creator = threading.Thread(target=create_all_along, daemon=True)
    creator.start()
    try:
        wait_for("Services created before the upgrade", lambda: len(born_as) >= 5)
        start_with("policy", start_operator, dual_cluster, dual)

        def legacy_gone() -> int | None:
            out = admin.run(
                "get", "mutatingadmissionpolicy", legacy_name, "--ignore-not-found", "-o", "name"
            )
            return None if out.strip() else len(born_as)

        gone_at = wait_for("the per-namespace objects to be removed", legacy_gone, timeout=60)
        assert set(shared_objects(dual)) == set(NATIVE_KINDS)
        wait_for("Services created after the removal", lambda: len(born_as) >= gone_at + 10)
    finally:
        stop.set()
        creator.join(timeout=30)
    wrong = [b for b in born_as if b[1:] != ("RequireDualStack", ["IPv6", "IPv4"])]
    assert not wrong, f"{len(wrong)} of {len(born_as)} born non-compliant: {wrong[:5]}"
    binding = admin.run(
        "get", "mutatingadmissionpolicybinding", legacy_name, "--ignore-not-found", "-o", "name"
    )
    assert not binding.strip()
