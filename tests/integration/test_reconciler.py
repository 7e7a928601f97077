"""The operator as a real process against the real control plane.

Writes are counted from the server's side, in the API server's audit log (the
operator authenticates as its own user, ``dualstack-operator``).
"""

from __future__ import annotations

import datetime
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcluster import REPO, LocalCluster
from localcluster.audit import service_patches
from support.kube import (
    Kubectl,
    deny_require_dual_stack,
    dsp,
    families,
    service,
    status_when,
    wait_for,
)
from support.operator_proc import OperatorProcess, after_next_pass

StartOperator = Callable[..., OperatorProcess]


def mixed_services(k: Kubectl) -> dict[str, dict[str, Any]]:
    objs = {
        "web": service("web", selector={"app": "web"}),
        "api": service("api", selector={"app": "api"}, ipFamilyPolicy="PreferDualStack"),
        "checkout": service("checkout", type="NodePort", selector={"app": "c"}),
        "lb": service("lb", type="LoadBalancer", selector={"app": "lb"}),
        "db": service("db", clusterIP="None", selector={"app": "db"}),
        "peers": service("peers", clusterIP="None"),  # headless, no selector
        "payments": service("payments", type="ExternalName", externalName="pay.example.com"),
        "legacy": service("legacy", selector={"app": "legacy"}),
    }
    objs["legacy"]["metadata"]["annotations"] = {"dualstack.dev/ignore": "true"}
    return {name: k.create(obj) for name, obj in objs.items()}


def test_mixed_namespace_converges_with_exact_status(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    created = mixed_services(dual)
    start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]))

    status = status_when(dual, lambda s: s.get("driftedServices") == 4)
    assert {k: status[k] for k in ("matchedServices", "compliantServices", "excludedServices")} == {
        "matchedServices": 6,
        "compliantServices": 2,
        "excludedServices": 2,
    }
    assert status["clusterIPFamilies"] == ["IPv4", "IPv6"]
    assert [(d["service"], d["reason"]) for d in status["drift"]] == [
        ("api", "PrimaryFamilyMismatch"),
        ("checkout", "PrimaryFamilyMismatch"),
        ("lb", "PrimaryFamilyMismatch"),
        ("web", "PrimaryFamilyMismatch"),
    ]
    assert "`spec.primaryFamilyChange: Recreate` on the policy" in status["drift"][0]["message"]
    assert "IPv6 primary, keeping its IPv4 ClusterIP" in status["drift"][0]["message"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Compliant"]["status"] == "False"
    assert conditions["Compliant"]["reason"] == "DriftDetected"
    assert conditions["Compliant"]["message"] == "4 of 6 Services drifted"
    assert all(c["observedGeneration"] == 1 for c in conditions.values())

    # Fixed what can be fixed: the wrong-primary Services gained IPv6, kept their IPv4
    # primary and their identity (never deleted and recreated); headless ones flipped.
    for name in ("web", "api", "checkout", "lb"):
        assert families(dual, name) == ("RequireDualStack", ["IPv4", "IPv6"])
        assert dual.get("service", name)["metadata"]["uid"] == created[name]["metadata"]["uid"]
    for name in ("db", "peers"):
        assert families(dual, name) == ("RequireDualStack", ["IPv6", "IPv4"])
    # Excluded Services were never written; no Service carries anything of the operator's.
    for name in ("payments", "legacy"):
        after = dual.get("service", name)["metadata"]
        assert after["resourceVersion"] == created[name]["metadata"]["resourceVersion"]
    for svc in dual.get("services")["items"]:
        assert not svc["metadata"].get("finalizers")
        annotations = svc["metadata"].get("annotations") or {}
        assert set(annotations) <= {"dualstack.dev/ignore"}
    patches = service_patches(dual_cluster.audit.writes(dual.namespace or ""))
    assert patches == {n: 1 for n in ("web", "api", "checkout", "lb", "db", "peers")}
    # Kopf keeps no state on the policy either (no change handlers anywhere).
    meta = dual.get("dsp", "default")["metadata"]
    assert not meta.get("finalizers")
    assert not [a for a in meta.get("annotations") or {} if "kopf" in a or "dualstack" in a]

    events = dual.get("events")["items"]
    remediated = {e["involvedObject"]["name"] for e in events if e["reason"] == "Remediated"}
    assert remediated == {"web", "api", "checkout", "lb", "db", "peers"}
    assert any(
        e["reason"] == "DriftDetected" and e["involvedObject"]["kind"] == "DualStackPolicy"
        for e in events
    )


def test_quiet_steady_state(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    for i in range(5):
        dual.create(service(f"s{i}", selector={"app": f"s{i}"}))
    operator = start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
    status_when(dual, lambda s: s.get("compliantServices") == 5)
    ns = dual.namespace or ""
    converged = dual_cluster.audit.writes(ns)
    assert service_patches(converged) == {f"s{i}": 1 for i in range(5)}
    status_writes = sum(n for (res, _, _), n in converged.items() if res.endswith("/status"))
    assert status_writes <= 2, converged

    # A restart re-lists everything and runs a full pass: still nothing to write.
    operator.stop()
    restarted = start_operator(dual_cluster, dual)
    wait_for("the restarted operator's first pass", lambda: restarted.policy_passes() >= 1)
    before = {
        s["metadata"]["name"]: s["metadata"]["resourceVersion"]
        for s in dual.get("services")["items"]
    }
    policy_rv = dual.get("dsp", "default")["metadata"]["resourceVersion"]
    # An event for the operator to process; the pass it triggers must write nothing.
    after_next_pass(restarted, lambda: dual.run("label", "service", "s0", "touched=yes"))
    assert dual_cluster.audit.writes(ns) == converged
    after = {
        s["metadata"]["name"]: s["metadata"]["resourceVersion"]
        for s in dual.get("services")["items"]
    }
    assert {k: v for k, v in after.items() if k != "s0"} == {
        k: v for k, v in before.items() if k != "s0"
    }
    assert dual.get("dsp", "default")["metadata"]["resourceVersion"] == policy_rv


def test_audit_reports_and_writes_nothing_until_enforced(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    created = dual.create(service("web", selector={"app": "web"}))
    start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack", mode="Audit"))
    status = status_when(dual, lambda s: s.get("driftedServices") == 1)
    assert status["drift"][0]["reason"] == "MissingFamily"
    assert (
        dual.get("service", "web")["metadata"]["resourceVersion"]
        == (created["metadata"]["resourceVersion"])
    )
    assert service_patches(dual_cluster.audit.writes(dual.namespace or "")) == {}

    dual.patch("dsp", "default", {"spec": {"mode": "Enforce"}})
    status = status_when(dual, lambda s: s.get("compliantServices") == 1)
    assert status["observedGeneration"] == 2
    assert families(dual, "web") == ("PreferDualStack", ["IPv4", "IPv6"])
    assert service_patches(dual_cluster.audit.writes(dual.namespace or "")) == {"web": 1}


def test_downgrade_to_single_stack(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    dual.create(service("web", selector={"app": "web"}, ipFamilyPolicy="RequireDualStack"))
    start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="SingleStack"))
    status_when(dual, lambda s: s.get("compliantServices") == 1)
    svc = dual.get("service", "web")["spec"]
    assert (svc["ipFamilyPolicy"], svc["ipFamilies"], len(svc["clusterIPs"])) == (
        "SingleStack",
        ["IPv4"],
        1,
    )


def test_require_dual_stack_on_a_single_stack_cluster_writes_nothing(
    single: Kubectl, single_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    created = single.create(service("web", selector={"app": "web"}))
    operator = start_operator(single_cluster, single)
    single.create(dsp(ipFamilyPolicy="RequireDualStack"))
    status = status_when(single, lambda s: s.get("driftedServices") == 1)
    assert status["clusterIPFamilies"] == ["IPv4"]
    assert status["drift"][0]["reason"] == "ClusterNotDualStack"
    policy_rv = single.get("dsp", "default")["metadata"]["resourceVersion"]
    # Each event costs exactly one pass and no write: no retry loop in between.
    first = after_next_pass(operator, lambda: single.run("label", "service", "web", "a=1"))
    second = after_next_pass(operator, lambda: single.run("label", "service", "web", "b=1"))
    assert second == first + 1, "passes only when something happened"
    assert single_cluster.audit.attempts(single.namespace or "", "web") == []
    assert single.get("service", "web")["spec"] == created["spec"], "never written (labels aside)"
    assert single.get("dsp", "default")["metadata"]["resourceVersion"] == policy_rv


def test_prefer_dual_stack_on_a_single_stack_cluster_is_compliant(
    single: Kubectl, single_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    single.create(service("web", selector={"app": "web"}, ipFamilyPolicy="PreferDualStack"))
    start_operator(single_cluster, single)
    single.create(dsp(ipFamilyPolicy="PreferDualStack"))
    status = status_when(single, lambda s: "compliantServices" in s)
    assert (status["compliantServices"], status["driftedServices"]) == (1, 0)
    assert service_patches(single_cluster.audit.writes(single.namespace or "")) == {}


def test_killed_mid_convergence_then_restarted(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    count = 500
    items = [service(f"s{i:03}", selector={"app": "x"}) for i in range(count)]
    dual.run(
        "create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    operator = start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="PreferDualStack"))
    ns = dual.namespace or ""
    wait_for(
        "the first remediations",
        lambda: len(service_patches(dual_cluster.audit.writes(ns))) >= 1,
        interval=0.05,
    )
    operator.stop(signal.SIGKILL)
    partial = len(service_patches(dual_cluster.audit.writes(ns)))

    start_operator(dual_cluster, dual)
    status_when(dual, lambda s: s.get("compliantServices") == count, timeout=120)
    stored = dual.get("services")["items"]
    assert all(s["spec"]["ipFamilies"] == ["IPv4", "IPv6"] for s in stored), "none lost"

    codes: dict[str, list[int]] = {}
    for event in dual_cluster.audit_events():
        ref = event.get("objectRef") or {}
        ours = event["user"]["username"] == "dualstack-operator" and ref.get("namespace") == ns
        if ours and ref.get("resource") == "services":
            codes.setdefault(ref["name"], []).append(event["responseStatus"]["code"])
    assert len(codes) == count
    # Requests in flight at the SIGKILL are logged 504 whether or not they were
    # stored; the restarted operator re-patched only those that were not.
    for name, seen in codes.items():
        assert seen.count(200) <= 1, f"{name} written twice: {seen}"
        assert set(seen) <= {200, 504}, f"{name}: {seen}"
        assert seen[-1] == 200 or seen == [504], f"{name}: {seen}"
    in_flight = sum(seen.count(504) for seen in codes.values())
    assert in_flight <= 16, "at most the operator's concurrent writes were cut off"
    assert 0 < partial < count, f"killed after {partial} of {count}: not mid-convergence"


def test_rejected_patch_is_reported_and_retried_with_backoff(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """A real rejection: a ValidatingAdmissionPolicy forbids RequireDualStack here."""
    ns = dual.namespace or ""
    admin = Kubectl(dual.binary, dual.kubeconfig)
    vap = deny_require_dual_stack(admin, ns, "RequireDualStack is not allowed in this namespace")
    try:
        dual.create(service("web", selector={"app": "web"}))
        wait_for(  # the binding takes effect asynchronously
            "the admission policy to deny",
            lambda: (
                "not allowed"
                in dual.stderr_of(
                    "patch",
                    "service",
                    "web",
                    "--dry-run=server",
                    "-p",
                    '{"spec":{"ipFamilyPolicy":"RequireDualStack","ipFamilies":["IPv4","IPv6"]}}',
                )
            ),
        )
        operator = start_operator(dual_cluster, dual)
        dual.create(dsp(ipFamilyPolicy="RequireDualStack"))
        status = status_when(
            dual, lambda s: bool(s.get("drift")) and s["drift"][0]["reason"] == "PatchRejected"
        )
        assert "RequireDualStack is not allowed in this namespace" in status["drift"][0]["message"]
        # A pass inside the backoff (triggered by an unrelated Service) must not retry.
        after_next_pass(
            operator,
            lambda: dual.create(service("other", type="ExternalName", externalName="x.example")),
        )
        attempts = dual_cluster.audit.attempts(ns, "web")
        assert attempts
        assert all(code == 422 for code in attempts)
        assert len(attempts) == 1, attempts  # the next try waits out a 10 s backoff
        warnings = [
            e
            for e in dual.get("events")["items"]
            if e["reason"] == "PatchRejected" and e["type"] == "Warning"
        ]
        assert len(warnings) == 1
        assert families(dual, "web") == ("SingleStack", ["IPv4"])

        # Once the obstacle is gone, the backed-off retry succeeds by itself.
        admin.run("delete", "validatingadmissionpolicybinding", vap)
        status_when(dual, lambda s: s.get("compliantServices") == 1, timeout=45)
        assert families(dual, "web") == ("RequireDualStack", ["IPv4", "IPv6"])
    finally:
        admin.run("delete", "validatingadmissionpolicybinding", vap, "--ignore-not-found")
        admin.run("delete", "validatingadmissionpolicy", vap, "--ignore-not-found")


def test_deleting_a_policy_leaves_services_as_they_are(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    dual.create(service("web", selector={"app": "web"}))
    operator = start_operator(dual_cluster, dual)
    dual.create(dsp(ipFamilyPolicy="RequireDualStack"))
    status_when(dual, lambda s: s.get("compliantServices") == 1)
    rv = dual.get("service", "web")["metadata"]["resourceVersion"]
    dual.run("delete", "dsp", "default", "--timeout=30s")
    wait_for(
        "the operator to let go of the namespace", lambda: "left as they are" in operator.log()
    )
    assert dual.get("service", "web")["metadata"]["resourceVersion"] == rv
    assert families(dual, "web") == ("RequireDualStack", ["IPv4", "IPv6"])


def test_conflicting_policies_oldest_wins(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    dual.create(
        {
            **service("web", selector={"app": "web"}),
            "metadata": {"name": "web", "labels": {"tier": "web"}},
        }
    )
    dual.create(service("db", selector={"app": "db"}))
    start_operator(dual_cluster, dual)
    # The oldest policy wins even though its name sorts last.
    first = dual.create(
        dsp(
            "z-older",
            ipFamilyPolicy="PreferDualStack",
            serviceSelector={"matchLabels": {"tier": "web"}},
        )
    )
    born = datetime.datetime.fromisoformat(first["metadata"]["creationTimestamp"])
    wait_for(  # creationTimestamp has one-second resolution
        "the clock to pass the older policy's second",
        lambda: datetime.datetime.now(datetime.UTC) >= born + datetime.timedelta(seconds=1),
    )
    dual.create(dsp("a-newer", ipFamilyPolicy="SingleStack"))

    older = status_when(dual, lambda s: s.get("compliantServices") == 1, name="z-older")
    assert older["matchedServices"] == 1
    newer = status_when(dual, lambda s: s.get("driftedServices") == 1, name="a-newer")
    assert newer["matchedServices"] == 2
    assert [(d["service"], d["reason"]) for d in newer["drift"]] == [("web", "Conflict")]
    assert "z-older" in newer["drift"][0]["message"]
    assert families(dual, "web") == ("PreferDualStack", ["IPv4", "IPv6"])
    assert families(dual, "db") == ("SingleStack", ["IPv4"])


def test_cluster_gaining_ipv6_upgrades_services_through_the_operator(
    tmp_path: Path, binaries: Path, start_operator: StartOperator
) -> None:
    """The migration story (kubernetes#101681): the server never upgrades existing
    PreferDualStack Services by itself; the operator notices the new family and does.
    The cluster is converted the v1.33+ way (the default ServiceCIDR first, then the
    flags), and the operator's poll is set to 10 minutes: only its ServiceCIDR watch can
    make it notice within the minute the test waits, and never before the API server
    serves IPv6 (no refused patch)."""
    cluster = LocalCluster(tmp_path / "migrating", ("ipv4",), binaries)
    cluster.start(die_with_parent=True)
    try:
        k = Kubectl(binaries / "kubectl", cluster.kubeconfig)
        k.run("apply", "-f", str(REPO / "crds" / "dualstackpolicy.yaml"))
        k.run("create", "namespace", "shop")
        shop = k.in_namespace("shop")
        shop.create(service("web", selector={"app": "web"}, ipFamilyPolicy="PreferDualStack"))
        shop.create(service("plain", selector={"app": "plain"}))
        operator = start_operator(cluster, shop, "--cluster-recheck-seconds=600")
        shop.create(dsp(ipFamilyPolicy="PreferDualStack"))
        status = status_when(shop, lambda s: s.get("compliantServices") == 2)
        assert status["clusterIPFamilies"] == ["IPv4"]

        began = time.monotonic()
        cluster.convert(("ipv4", "ipv6"))
        converted = time.monotonic()
        status = status_when(
            shop,
            lambda s: (
                s.get("clusterIPFamilies") == ["IPv4", "IPv6"] and s.get("compliantServices") == 2
            ),
        )
        upgraded = time.monotonic()
        for name in ("web", "plain"):
            assert families(shop, name) == ("PreferDualStack", ["IPv4", "IPv6"])
        patches = service_patches(cluster.audit.writes("shop"))
        assert patches == {"plain": 2, "web": 1}  # plain: the policy field, then IPv6
        refused = [
            c for n in ("web", "plain") for c in cluster.audit.attempts("shop", n) if c >= 400
        ]
        assert refused == [], "no patch sent before the API server served IPv6"
        print(
            f"CONVERSION ServiceCIDR patched and control plane restarted in "
            f"{converted - began:.1f}s; Services compliant {upgraded - converted:.1f}s later"
        )
        assert operator.proc is not None
        assert operator.proc.alive()
    finally:
        cluster.stop()


def test_sigterm_shuts_down_cleanly(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    operator = start_operator(dual_cluster, dual)
    wait_for("the operator to start", lambda: "offers" in operator.log())
    assert operator.stop(signal.SIGTERM, timeout=15) == 0
    assert "Traceback" not in operator.log()
