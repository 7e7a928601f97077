"""primaryFamilyChange: Recreate on the real control plane: journaled, once, nothing lost."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dualstack_operator.core.recreation import journal_name
from dualstack_operator.engine.recreation import FAULT_ENV
from localcluster import LocalCluster
from support.kube import Kubectl, deny_services, dsp, service, status_when, wait_for
from support.operator_proc import OperatorProcess, after_next_pass

StartOperator = Callable[..., OperatorProcess]
RECREATE: dict[str, Any] = {
    "ipFamilyPolicy": "RequireDualStack",
    "ipFamilies": ["IPv6", "IPv4"],
    "primaryFamilyChange": "Recreate",
}


def rich_service(name: str, **spec: Any) -> dict[str, Any]:
    """A Service with much a recreation must keep."""
    svc = service(
        name,
        selector={"app": name, "tier": "web"},
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}},
        publishNotReadyAddresses=True,
        internalTrafficPolicy="Local",
        **spec,
    )
    svc["spec"]["ports"] = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    svc["metadata"]["labels"] = {"app": name, "team": "shop"}
    svc["metadata"]["annotations"] = {"example.com/owner": "shop-team"}
    return svc


def kept(svc: dict[str, Any]) -> dict[str, Any]:
    """What must survive a recreation."""
    spec = svc["spec"]
    return {
        "labels": svc["metadata"].get("labels"),
        "annotations": svc["metadata"].get("annotations"),
        "type": spec.get("type"),
        "ports": spec["ports"],
        "selector": spec.get("selector"),
        "sessionAffinity": spec.get("sessionAffinity"),
        "sessionAffinityConfig": spec.get("sessionAffinityConfig"),
        "publishNotReadyAddresses": spec.get("publishNotReadyAddresses"),
        "internalTrafficPolicy": spec.get("internalTrafficPolicy"),
        "externalTrafficPolicy": spec.get("externalTrafficPolicy"),
    }


def start(
    start_operator: StartOperator, cluster: LocalCluster, k: Kubectl, **env: str
) -> OperatorProcess:
    return start_operator(cluster, k, f"--journal-namespace={k.namespace}", env=env or None)


def writes_to(cluster: LocalCluster, k: Kubectl, name: str) -> dict[str, int]:
    return {
        verb: n
        for (res, svc, verb), n in cluster.audit.writes(k.namespace or "").items()
        if res == "services" and svc == name
    }


def test_recreate_makes_ipv4_primary_services_ipv6_primary_keeping_the_rest(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    before = {
        "web": dual.create(rich_service("web")),
        "checkout": dual.create(rich_service("checkout", type="NodePort")),
    }
    start(start_operator, dual_cluster, dual)
    dual.create(dsp(**RECREATE))
    status = status_when(
        dual, lambda s: s.get("compliantServices") == 2 and s.get("driftedServices") == 0
    )
    assert status["matchedServices"] == 2
    for name, old in before.items():
        new = dual.get("service", name)
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        assert new["spec"]["ipFamilyPolicy"] == "RequireDualStack"
        assert new["spec"]["ipFamilies"] == ["IPv6", "IPv4"]
        assert ":" in new["spec"]["clusterIP"], "IPv6 primary"
        assert new["spec"]["clusterIPs"][1] == old["spec"]["clusterIP"], "the IPv4 address kept"
        assert kept(new) == kept(old), name  # nodePort included, in ports
        assert writes_to(dual_cluster, dual, name) == {"delete": 1, "create": 1}
        selector = f"kubernetes.io/service-name={name}"

        def families(selector: str = selector) -> bool:
            slices = dual.get("endpointslices", "", "-l", selector)["items"]
            return {s["addressType"] for s in slices} == {"IPv4", "IPv6"}

        # The EndpointSlice controller makes one slice per family, moments apart.
        wait_for(f"slices of both families for {name}", families)
    assert dual.get("configmaps", "", "-l", "dualstack.dev/journal")["items"] == []
    events = [e for e in dual.get("events")["items"] if e["reason"] == "Recreated"]
    assert len(events) == 4  # on each new Service and on the policy
    assert all(f"{before[n]['spec']['clusterIP']} kept" in e["message"]
               for e in events for n in before if e["message"].startswith(n))  # fmt: skip


def test_sigkill_between_delete_and_create_loses_nothing(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    old = dual.create(rich_service("checkout", type="NodePort"))
    operator = start(start_operator, dual_cluster, dual, **{FAULT_ENV: "after-delete"})
    dual.create(dsp(**RECREATE))
    assert operator.wait_exit() == -9, "the fault point kills the operator after the delete"
    assert dual.run("get", "service", "checkout", "--ignore-not-found").strip() == ""
    journal = dual.get("configmap", journal_name(dual.namespace or "", "checkout"))
    assert '"nodePort"' in journal["data"]["manifest"]
    asked = json.loads(journal["data"]["manifest"])["spec"]["clusterIPs"]
    assert asked[1] == old["spec"]["clusterIP"], "the kept address is journaled"

    start(start_operator, dual_cluster, dual)
    status_when(dual, lambda s: s.get("compliantServices") == 1)
    new = dual.get("service", "checkout")
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["spec"]["ipFamilies"] == ["IPv6", "IPv4"]
    assert new["spec"]["clusterIPs"] == asked, "back on the kept address, and the pick"
    assert kept(new) == kept(old)
    assert writes_to(dual_cluster, dual, "checkout") == {"delete": 1, "create": 1}
    assert len(dual.get("services")["items"]) == 1, "no duplicate"
    wait_for(
        "the journal entry to go",
        lambda: dual.get("configmaps", "", "-l", "dualstack.dev/journal")["items"] == [],
    )


def test_a_kept_address_taken_meanwhile_falls_back_to_a_new_one_and_says_so(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    old = dual.create(rich_service("web"))
    address = old["spec"]["clusterIP"]
    operator = start(start_operator, dual_cluster, dual, **{FAULT_ENV: "after-delete"})
    dual.create(dsp(**RECREATE))
    assert operator.wait_exit() == -9
    dual.create(service("squatter", clusterIP=address))  # the old address, someone else's
    start(start_operator, dual_cluster, dual)
    status_when(dual, lambda s: s.get("compliantServices") == 2)
    new = dual.get("service", "web")
    assert new["spec"]["ipFamilies"] == ["IPv6", "IPv4"]
    assert address not in new["spec"]["clusterIPs"]
    (event,) = [
        e
        for e in dual.get("events")["items"]
        if e["reason"] == "Recreated"
        and e["involvedObject"]["name"] == "web"
        and e["involvedObject"]["kind"] == "Service"
    ]  # (the squatter is recreated too, keeping the address it holds)
    assert f"the kept address {address} could not be had" in event["message"]
    assert "already allocated" in event["message"], "the API server's own words"


def test_load_balancers_need_their_own_consent_and_the_budget_holds(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    dual.create(rich_service("lb", type="LoadBalancer"))
    dual.create(rich_service("a"))
    dual.create(rich_service("b"))
    start(start_operator, dual_cluster, dual)
    dual.create(dsp(**RECREATE, maxRecreationsPerHour=1))
    status = status_when(
        dual,
        lambda s: (
            s.get("compliantServices") == 1
            and "budget" in {d["service"]: d["message"] for d in s.get("drift") or []}.get("b", "")
        ),
    )
    drift = {d["service"]: d for d in status["drift"]}
    assert set(drift) == {"b", "lb"}
    assert drift["lb"]["reason"] == "PrimaryFamilyMismatch"
    assert "dualstack.dev/recreate=true" in drift["lb"]["message"]
    assert "budget of 1 recreations per hour is used" in drift["b"]["message"]
    assert writes_to(dual_cluster, dual, "a") == {"delete": 1, "create": 1}
    assert "delete" not in writes_to(dual_cluster, dual, "b")
    assert "delete" not in writes_to(dual_cluster, dual, "lb")


def test_audit_never_recreates(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    old = dual.create(rich_service("web"))
    start(start_operator, dual_cluster, dual)
    dual.create(dsp(**RECREATE, mode="Audit"))
    status = status_when(dual, lambda s: s.get("driftedServices") == 1)
    assert status["drift"][0]["reason"] == "PrimaryFamilyMismatch"
    assert dual.get("service", "web")["metadata"]["uid"] == old["metadata"]["uid"]
    assert writes_to(dual_cluster, dual, "web") == {}


def deny_service_creation(admin: Kubectl, namespace: str) -> str:
    """A real refusal of the create: a ValidatingAdmissionPolicy denying Service CREATE."""
    name = f"deny-create-{namespace}"
    return deny_services(admin, namespace, name, "CREATE", "false", "creation frozen")


def test_a_refused_create_is_retried_and_the_journal_keeps_the_manifest(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    old = dual.create(rich_service("web"))
    admin = Kubectl(dual.binary, dual.kubeconfig)
    name = deny_service_creation(admin, dual.namespace or "")
    try:
        wait_for(
            "the API server to refuse Service creation",
            lambda: (
                "creation frozen"
                in dual.stderr_of(
                    "create", "service", "clusterip", "probe", "--tcp=80", "--dry-run=server"
                )
            ),
        )
        start(start_operator, dual_cluster, dual)
        dual.create(dsp(**RECREATE))
        wait_for(
            "a RecreateFailed event",
            lambda: any(e["reason"] == "RecreateFailed" for e in dual.get("events")["items"]),
        )
        assert dual.run("get", "service", "web", "--ignore-not-found").strip() == ""
        journal = dual.get("configmap", journal_name(dual.namespace or "", "web"))
        assert '"sessionAffinityConfig"' in journal["data"]["manifest"]
    finally:
        admin.run("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name)
    new = wait_for(
        "the Service created again once allowed",
        lambda: (lambda out: out or None)(
            dual.run("get", "service", "web", "--ignore-not-found", "-o", "json")
        ),
        timeout=90,
    )
    created = json.loads(new)
    assert created["spec"]["ipFamilies"] == ["IPv6", "IPv4"]
    assert kept(created) == kept(old)
    wait_for(
        "the journal entry to go",
        lambda: dual.get("configmaps", "", "-l", "dualstack.dev/journal")["items"] == [],
    )


def test_a_name_taken_while_the_operator_was_down_is_left_alone(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    dual.create(rich_service("web"))
    operator = start(start_operator, dual_cluster, dual, **{FAULT_ENV: "after-delete"})
    dual.create(dsp(**RECREATE))
    assert operator.wait_exit() == -9
    theirs = dual.create(service("web", selector={"app": "someone-else"}))
    start(start_operator, dual_cluster, dual)
    wait_for(
        "a RecreateBlocked event",
        lambda: any(e["reason"] == "RecreateBlocked" for e in dual.get("events")["items"]),
    )
    now = dual.get("service", "web")
    assert now["metadata"]["uid"] == theirs["metadata"]["uid"]
    assert now["spec"]["selector"] == {"app": "someone-else"}
    journal = dual.get("configmap", journal_name(dual.namespace or "", "web"))
    assert journal["metadata"]["labels"]["dualstack.dev/journal"] == "superseded"


def test_without_a_journal_namespace_recreate_is_reported_once_and_nothing_is_deleted(
    dual: Kubectl, dual_cluster: LocalCluster, start_operator: StartOperator
) -> None:
    """Found by hand: out of cluster with no journal namespace, the operator logged a 404
    every 5 s, forever, and the policy's status did not say why. Now: one line at start,
    one condition and one event on the policy, the Service reported, nothing deleted."""
    dual.create(service("web", selector={"app": "web"}))
    operator = start_operator(dual_cluster, dual, "--journal-namespace=no-such-namespace")
    dual.create(dsp(**RECREATE))
    status = status_when(
        dual,
        lambda s: any(c["type"] == "RecreateAvailable" for c in s.get("conditions") or []),
    )
    (cond,) = [c for c in status["conditions"] if c["type"] == "RecreateAvailable"]
    assert (cond["status"], cond["reason"]) == ("False", "JournalNamespaceMissing")
    assert "no-such-namespace does not exist" in cond["message"]
    (drift,) = status["drift"]
    assert drift["reason"] == "PrimaryFamilyMismatch"
    assert "not recreated: primaryFamilyChange: Recreate is unavailable" in drift["message"]

    def events() -> list[dict[str, Any]]:
        items = dual.get("events")["items"]
        return [e for e in items if e["reason"] == "JournalNamespaceMissing"]

    wait_for("the policy's event", events)
    after_next_pass(operator, lambda: dual.create(service("other", selector={"app": "o"})))
    (event,) = events()
    assert event["type"] == "Warning"
    assert event.get("count", 1) == 1, "one event, not one per pass"
    assert writes_to(dual_cluster, dual, "web") == {}, "nothing deleted, nothing created"
    said = [
        line
        for line in operator.log().splitlines()
        if "Recreate is unavailable" in line and "not recreated" not in line
    ]
    assert len(said) == 1, "said once, at start"
    assert "the journal could not be written" not in operator.log()
    assert operator.alive()
