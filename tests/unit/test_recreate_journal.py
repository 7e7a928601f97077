"""Recreation and its journal against a recording store: the paths a live run rarely takes."""

from __future__ import annotations

import copy
import ipaddress
import json
import random
from typing import Any

from dualstack_operator.api.names import JOURNAL_LABEL
from dualstack_operator.core.errors import Conflict, Invalid, NotFound, Rejected
from dualstack_operator.core.recreation import recreated_manifest, static_address
from dualstack_operator.engine.recreation import Recreator

FIELDS = {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}


def stored(name: str, uid: str = "u1", families: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": name},
            "annotations": {"a": "b"},
            "managedFields": [{"manager": "kubectl"}],
            "finalizers": ["example.com/keep", "service.kubernetes.io/load-balancer-cleanup"],
        },
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.0.0.1",
            "clusterIPs": ["10.0.0.1"],
            "ipFamilyPolicy": "SingleStack",
            "ipFamilies": families or ["IPv4"],
            "ports": [{"port": 80, "nodePort": 30080}],
            "selector": {"app": name},
            "sessionAffinity": "ClientIP",
        },
        "status": {"loadBalancer": {}},
    }


class Store:
    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.configmaps: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.refuse_create: Exception | None = None
        self.taken: set[str] = set()  # addresses the create refuses as already allocated
        self.cidrs: list[str] | None = ["10.0.0.0/16", "fd00:10::/112"]
        self.uids = 1

    async def read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.services.get(name))

    async def delete_service(self, namespace: str, name: str, uid: str, rv: str) -> None:
        self.calls.append(f"delete {name}")
        if name not in self.services:
            raise NotFound(404, "gone")
        if self.services[name]["metadata"]["uid"] != uid:
            raise Conflict(409, "precondition")
        del self.services[name]

    async def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"create {body['metadata']['name']}")
        if self.refuse_create is not None:
            raise self.refuse_create
        for ip in body["spec"].get("clusterIPs") or []:
            if ip in self.taken:
                raise Invalid(
                    422,
                    f'Service "{body["metadata"]["name"]}" is invalid: spec.clusterIPs: Invalid '
                    f"value: ...: failed to allocate IP {ip}: provided IP is already allocated",
                )
        self.uids += 1
        made = copy.deepcopy(body)
        made["metadata"]["uid"] = f"u{self.uids}"
        self.services[body["metadata"]["name"]] = made
        return made

    async def service_cidrs(self) -> list[str] | None:
        return self.cidrs

    async def list_configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        wanted = dict(part.split("=") for part in selector.split(","))
        return [
            copy.deepcopy(cm)
            for cm in self.configmaps.values()
            if all(cm["metadata"]["labels"].get(k) == v for k, v in wanted.items())
        ]

    async def create_configmap(self, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append("journal")
        self.configmaps[body["metadata"]["name"]] = copy.deepcopy(body)

    async def label_configmap(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        self.configmaps[name]["metadata"]["labels"].update(labels)

    async def delete_configmap(self, namespace: str, name: str) -> None:
        self.calls.append("forget")
        del self.configmaps[name]


def test_the_manifest_keeps_everything_but_what_the_server_allocates() -> None:
    manifest = recreated_manifest(stored("web"), FIELDS)
    assert manifest["metadata"] == {
        "name": "web",
        "namespace": "ns",
        "labels": {"app": "web"},
        "annotations": {"a": "b"},
        "finalizers": ["example.com/keep"],
    }
    assert manifest["spec"] == {
        "type": "NodePort",
        "ports": [{"port": 80, "nodePort": 30080}],
        "selector": {"app": "web"},
        "sessionAffinity": "ClientIP",
        **FIELDS,
    }
    assert "status" not in manifest


async def test_journal_first_then_delete_then_create_then_forget() -> None:
    store = Store()
    store.services["web"] = stored("web")
    outcome = await Recreator(store, "ops").recreate("ns", "web", "p", FIELDS, 10)
    assert outcome is not None
    assert outcome.done
    assert store.calls == ["journal", "delete web", "create web", "forget"]
    assert store.services["web"]["spec"]["ipFamilies"] == ["IPv6", "IPv4"]
    assert store.configmaps == {}


async def test_a_refused_create_keeps_the_journal_and_a_later_pass_finishes() -> None:
    store = Store()
    store.services["web"] = stored("web")
    store.refuse_create = Rejected(403, "exceeded quota: services")
    recreator = Recreator(store, "ops")
    outcome = await recreator.recreate("ns", "web", "p", FIELDS, 10)
    assert outcome is not None
    assert not outcome.done
    assert "exceeded quota" in outcome.message
    (entry,) = await recreator.pending("ns")
    assert json.loads(store.configmaps["recreate.ns.web"]["data"]["manifest"])["spec"]["ports"] == [
        {"port": 80, "nodePort": 30080}
    ]
    store.refuse_create = None
    assert (await recreator.finish(entry)).done
    assert "web" in store.services
    assert await recreator.pending("ns") == []


async def test_a_name_taken_meanwhile_is_never_overwritten() -> None:
    store = Store()
    store.services["web"] = stored("web")
    store.refuse_create = Rejected(500, "server unavailable")
    recreator = Recreator(store, "ops")
    await recreator.recreate("ns", "web", "p", FIELDS, 10)
    (entry,) = await recreator.pending("ns")
    store.services["web"] = stored("web", uid="someone-else")  # IPv4, not ours
    outcome = await recreator.finish(entry)
    assert outcome.done
    assert "taken meanwhile" in outcome.message
    assert store.services["web"]["metadata"]["uid"] == "someone-else"
    labels = store.configmaps["recreate.ns.web"]["metadata"]["labels"]
    assert labels[JOURNAL_LABEL] == "superseded", "kept for a human, never retried"
    assert await recreator.pending("ns") == []


async def test_a_service_changed_since_it_was_read_is_not_deleted() -> None:
    store = Store()
    store.services["web"] = stored("web")
    original = store.delete_service

    async def changed_meanwhile(namespace: str, name: str, uid: str, rv: str) -> None:
        store.services["web"]["metadata"]["uid"] = "replaced"
        await original(namespace, name, uid, rv)

    store.delete_service = changed_meanwhile  # type: ignore[method-assign]
    assert await Recreator(store, "ops").recreate("ns", "web", "p", FIELDS, 10) is None
    assert store.services["web"]["metadata"]["uid"] == "replaced"
    assert store.configmaps == {}, "the journal entry goes with the attempt"


def test_the_budget_counts_an_hour() -> None:
    now = [0.0]
    recreator = Recreator(Store(), "ops", clock=lambda: now[0])
    assert recreator.budget_left("ns", "p", 2) == 2
    recreator.recent[("ns", "p")].extend([0.0, 10.0])
    assert recreator.budget_left("ns", "p", 2) == 0
    assert recreator.next_slot_seconds("ns", "p") == 3600
    now[0] = 3600.0
    assert recreator.budget_left("ns", "p", 2) == 1


async def test_the_surviving_familys_address_is_kept_and_journaled() -> None:
    store = Store()
    store.services["web"] = stored("web")  # SingleStack [IPv4 10.0.0.1]
    recreator = Recreator(store, "ops", rng=random.Random(1))
    store.refuse_create = Rejected(500, "server unavailable")  # to see the journal
    await recreator.recreate("ns", "web", "p", FIELDS, 10)
    (entry,) = await recreator.pending("ns")
    assert entry.kept == ("10.0.0.1",)
    new, old = entry.addresses
    assert ipaddress.ip_address(new) in ipaddress.ip_network("fd00:10::/112")
    assert old == "10.0.0.1", "the old IPv4 address, second"
    store.refuse_create = None
    outcome = await recreator.finish(entry)
    assert outcome.done
    assert outcome.addresses == "kept"
    assert store.services["web"]["spec"]["clusterIPs"] == [new, "10.0.0.1"]


async def test_a_pick_taken_meanwhile_is_picked_again() -> None:
    store = Store()
    store.services["web"] = stored("web")
    first = static_address("fd00:10::/112", random.Random(7))
    store.taken.add(first)
    outcome = await Recreator(store, "ops", rng=random.Random(7)).recreate(
        "ns", "web", "p", FIELDS, 10
    )
    assert outcome is not None
    assert outcome.done
    assert outcome.addresses == "kept"
    ips = store.services["web"]["spec"]["clusterIPs"]
    assert ips[0] != first
    assert ips[1] == "10.0.0.1"
    assert store.calls.count("create web") == 2


async def test_a_kept_address_that_cannot_be_had_falls_back_to_new_ones_and_says_so() -> None:
    store = Store()
    store.services["web"] = stored("web")
    store.taken.add("10.0.0.1")  # still held, say
    outcome = await Recreator(store, "ops").recreate("ns", "web", "p", FIELDS, 10)
    assert outcome is not None
    assert outcome.done
    assert outcome.addresses == "new"
    assert "the kept address 10.0.0.1 could not be had" in outcome.fallback
    assert "clusterIPs" not in store.services["web"]["spec"], "left to the server"


async def test_without_a_known_range_the_server_chooses_and_it_is_reported() -> None:
    store = Store()
    store.services["web"] = stored("web")
    store.cidrs = None  # no ServiceCIDR API
    outcome = await Recreator(store, "ops").recreate("ns", "web", "p", FIELDS, 10)
    assert outcome is not None
    assert outcome.done
    assert outcome.addresses == "new"
    assert "no IPv6 service range is known" in outcome.fallback


async def test_a_dual_stack_service_keeps_both_addresses_in_the_new_order() -> None:
    store = Store()
    svc = stored("web", families=["IPv4", "IPv6"])
    svc["spec"].update(clusterIPs=["10.0.0.1", "fd00:10::9"], ipFamilyPolicy="PreferDualStack")
    store.services["web"] = svc
    store.cidrs = None  # nothing to pick
    outcome = await Recreator(store, "ops").recreate("ns", "web", "p", FIELDS, 10)
    assert outcome is not None
    assert outcome.done
    assert outcome.addresses == "kept"
    assert store.services["web"]["spec"]["clusterIPs"] == ["fd00:10::9", "10.0.0.1"]
    assert store.services["web"]["spec"]["clusterIP"] == "fd00:10::9"


def test_static_addresses_stay_in_the_lower_band_and_off_the_network_address() -> None:
    rng = random.Random(0)
    for cidr, band in (("10.96.0.0/16", 256), ("fd00:10:96::/112", 256), ("10.0.0.0/28", 14)):
        net = ipaddress.ip_network(cidr)
        for _ in range(500):
            ip = ipaddress.ip_address(static_address(cidr, rng))
            assert ip in net
            assert 1 <= int(ip) - int(net.network_address) <= band
