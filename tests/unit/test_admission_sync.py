"""Keeping the native admission objects in step, against a recording store."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from dualstack_operator.admission.cel import PARAMETER_NAME, POLICY_NAME, PROBED, Kind, parameter
from dualstack_operator.admission.native import NativeAdmission
from dualstack_operator.api.models import Admission, IPFamily
from dualstack_operator.api.names import MANAGED_BY_LABEL, NAME, OWNED_NAMESPACE_LABEL, PROBE_LABEL
from dualstack_operator.core.errors import Conflict
from dualstack_operator.core.views import PolicyView
from dualstack_operator.runtime.preflight import AdmissionUnavailable, resolve_admission

CLUSTER = [IPFamily.IPV4, IPFamily.IPV6]
PARAMS = "DualStackAdmission"


class Store:
    """The server's objects by (kind, namespace, name), with resourceVersions; records
    writes. Its dry-run probe is marked once the shared mutating policy exists, unless
    told the server has not loaded it yet."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.version = 0
        self.conflict_once = False
        self.loaded = True
        self.probes: list[str] = []

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(self.version)
        return obj

    def _create(self, key: tuple[str, str, str], body: dict[str, Any]) -> dict[str, Any]:
        if key in self.objects or self.conflict_once:
            self.conflict_once = False
            raise Conflict(409, "already exists")
        self.writes.append(("create", key[0], key[2]))
        self.objects[key] = self._stamp(body)
        return copy.deepcopy(self.objects[key])

    def _replace(self, key: tuple[str, str, str], body: dict[str, Any]) -> dict[str, Any]:
        if self.objects[key]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict(409, "stale")
        self.writes.append(("update", key[0], key[2]))
        self.objects[key] = self._stamp(body)
        return copy.deepcopy(self.objects[key])

    async def list_admission_objects(self, kind: Kind, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _, _), o in self.objects.items() if k == kind]

    async def create_admission_object(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        return self._create((str(kind), "", body["metadata"]["name"]), body)

    async def replace_admission_object(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        return self._replace((str(kind), "", body["metadata"]["name"]), body)

    async def delete_admission_object(self, kind: Kind, name: str) -> None:
        self.writes.append(("delete", str(kind), name))
        del self.objects[(str(kind), "", name)]

    async def list_admission_parameters(
        self, namespaces: tuple[str, ...], selector: str
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == PARAMS and (not namespaces or ns in namespaces)
        ]

    async def create_admission_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return self._create((PARAMS, meta["namespace"], meta["name"]), body)

    async def replace_admission_parameter(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return self._replace((PARAMS, meta["namespace"], meta["name"]), body)

    async def delete_admission_parameter(self, namespace: str, name: str) -> None:
        self.writes.append(("delete", PARAMS, f"{namespace}/{name}"))
        del self.objects[(PARAMS, namespace, name)]

    async def dry_run_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.probes.append(namespace)
        answer = copy.deepcopy(body)
        if self.loaded and (str(Kind.MUTATING), "", POLICY_NAME) in self.objects:
            answer["metadata"]["labels"][PROBE_LABEL] = PROBED
        return answer

    def legacy(self, namespace: str) -> None:
        """A namespace's per-namespace objects, as an earlier version made them."""
        for kind in Kind:
            name = f"dualstack.dev.{namespace}"
            labels = {MANAGED_BY_LABEL: NAME, OWNED_NAMESPACE_LABEL: namespace}
            body = {"kind": str(kind), "metadata": {"name": name, "labels": labels}}
            self.objects[(str(kind), "", name)] = self._stamp(body)


def policy(name: str, namespace: str = "ns", **spec: Any) -> PolicyView:
    return PolicyView.from_body(
        {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{name}-{namespace}",
                "generation": 1,
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": spec,
        }
    )


ENFORCE = policy("p", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"])
AUDIT = policy("q", ipFamilyPolicy="PreferDualStack", mode="Audit")


def shared(store: Store) -> set[str]:
    return {k for (k, _, name) in store.objects if name == POLICY_NAME}


async def test_parameters_follow_policies_with_no_write_when_in_step() -> None:
    store = Store()
    native = NativeAdmission(store, enabled=True, namespaces=())
    await native.refresh()
    assert await native.sync("ns", [ENFORCE], CLUSTER) == 1
    assert store.writes == [("create", PARAMS, PARAMETER_NAME)]
    assert await native.sync("ns", [ENFORCE], CLUSTER) == 0, "in step: no write"
    assert await native.sync_shared() == 4
    assert shared(store) == {str(k) for k in Kind}
    assert await native.sync_shared() == 0, "in step: no write"
    # A restart knows only what it lists: still nothing to write.
    again = NativeAdmission(store, enabled=True, namespaces=())
    await again.refresh()
    assert again.namespaces() == {"ns"}
    assert await again.sync("ns", [ENFORCE], CLUSTER) == 0
    assert await again.sync_shared() == 0

    changed = policy("p", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4", "IPv6"])
    changed = dataclasses.replace(changed, generation=2)
    store.writes.clear()
    assert await again.sync("ns", [changed, AUDIT], CLUSTER) == 1
    assert store.writes == [("update", PARAMS, PARAMETER_NAME)]
    spec = store.objects[(PARAMS, "ns", PARAMETER_NAME)]["spec"]
    assert [p["name"] for p in spec["policies"]] == ["p", "q"]
    assert set(spec["mutations"]) == {"p"}
    assert set(spec["warnings"]) == {"q"}
    store.writes.clear()
    assert await again.sync("ns", [], CLUSTER) == 1
    assert store.writes == [("delete", PARAMS, f"ns/{PARAMETER_NAME}")]
    assert shared(store), "the shared policies stay for the other namespaces"


async def test_the_number_of_shared_objects_does_not_grow_with_namespaces() -> None:
    store = Store()
    native = NativeAdmission(store, enabled=True, namespaces=())
    for i in range(50):
        view = policy("default", f"ns{i}", ipFamilyPolicy="PreferDualStack")
        await native.sync(f"ns{i}", [view], CLUSTER)
    await native.sync_shared()
    kinds = [k for (k, _, _) in store.objects]
    assert kinds.count(PARAMS) == 50
    assert len(kinds) == 50 + 4


async def test_earlier_objects_go_only_once_the_shared_policy_serves() -> None:
    store = Store()
    store.legacy("ns")
    store.loaded = False  # the API server has not loaded the new policy yet
    native = NativeAdmission(store, enabled=True, namespaces=())
    await native.refresh()
    assert native.namespaces() == {"ns"}
    await native.sync("ns", [ENFORCE], CLUSTER)
    await native.sync_shared()
    assert len(native.legacy) == 4, "kept while the shared policy does not serve"
    assert not [w for w in store.writes if w[0] == "delete"]
    assert store.probes == ["ns"]
    store.loaded = True
    assert await native.sync_shared() == 4
    assert not native.legacy
    # Bindings go before the policies they bind.
    deletes = [w[1] for w in store.writes if w[0] == "delete"]
    assert deletes[0] == str(Kind.VALIDATING_BINDING)
    assert {k for (k, _, n) in store.objects if n != POLICY_NAME} == {PARAMS}


async def test_disabled_only_removes_what_an_earlier_run_left() -> None:
    store = Store()
    native = NativeAdmission(store, enabled=True, namespaces=())
    await native.sync("ns", [ENFORCE, AUDIT], CLUSTER)
    await native.sync_shared()
    store.legacy("old")
    off = NativeAdmission(store, enabled=False, namespaces=())
    await off.refresh()
    assert off.namespaces() == {"ns", "old"}
    await off.sync("ns", [ENFORCE, AUDIT], CLUSTER)
    await off.sync_shared()
    assert store.objects == {}
    assert not store.probes, "nothing to wait for when removing"


async def test_a_namespaced_operator_leaves_the_shared_objects_to_others() -> None:
    store = Store()
    native = NativeAdmission(store, enabled=True, namespaces=())
    await native.sync("a", [policy("p", "a", ipFamilyPolicy="PreferDualStack")], CLUSTER)
    await native.sync("b", [policy("p", "b", ipFamilyPolicy="PreferDualStack")], CLUSTER)
    await native.sync_shared()
    store.legacy("a")
    store.legacy("c")
    off = NativeAdmission(store, enabled=False, namespaces=("a",))
    await off.refresh()
    assert off.namespaces() == {"a"}
    await off.sync("a", [], CLUSTER)
    await off.sync_shared()
    left = {(k, ns, n) for (k, ns, n) in store.objects}
    assert (PARAMS, "b", PARAMETER_NAME) in left
    assert (PARAMS, "a", PARAMETER_NAME) not in left
    assert shared(store) == {str(k) for k in Kind}
    assert (str(Kind.MUTATING), "", "dualstack.dev.c") in left, "not its namespace"
    assert (str(Kind.MUTATING), "", "dualstack.dev.a") not in left


async def test_a_conflict_reads_again_and_retries_once() -> None:
    store = Store()
    native = NativeAdmission(store, enabled=True, namespaces=())
    await native.sync("ns", [ENFORCE], CLUSTER)
    # Another replica changed the object meanwhile: our resourceVersion is stale.
    key = (PARAMS, "ns", PARAMETER_NAME)
    store.objects[key] = store._stamp(store.objects[key])
    changed = policy("p", ipFamilyPolicy="PreferDualStack")
    changed = dataclasses.replace(changed, generation=2)
    assert await native.sync("ns", [changed], CLUSTER) == 1
    assert store.writes[-1] == ("update", PARAMS, PARAMETER_NAME)


def test_the_parameter_holds_the_chain_oldest_first_and_the_tables() -> None:
    older = policy("z", ipFamilyPolicy="SingleStack", serviceSelector={"matchLabels": {"a": "b"}})
    newer = dataclasses.replace(ENFORCE, created="2026-02-01T00:00:00Z")
    spec = parameter("ns", [newer, older], CLUSTER)
    assert spec is not None
    assert spec["spec"]["policies"] == [
        {"name": "z", "serviceSelector": {"matchLabels": {"a": "b"}}},
        {"name": "p"},
    ]
    table = spec["spec"]["mutations"]["p"]

    def answer(shape: str) -> str:
        return str(table["answers"][table["shapes"][shape]])

    assert answer("//") == "RequireDualStack/IPv6,IPv4"
    assert answer("//IPv4") == "RequireDualStack/IPv4,IPv6", "a chosen IPv4 address stays"
    assert len(table["answers"]) < len(table["shapes"]) / 10, "each answer once"


@pytest.mark.parametrize(
    ("mode", "served", "expected"),
    [
        ("off", None, None),
        ("webhook", {"mutatingadmissionpolicies"}, Admission.WEBHOOK),
        ("auto", {"mutatingadmissionpolicies", "validatingadmissionpolicies"}, Admission.POLICY),
        (
            "auto",
            {"validatingadmissionpolicies", "mutatingwebhookconfigurations"},
            Admission.WEBHOOK,
        ),
        ("policy", {"mutatingadmissionpolicies"}, Admission.POLICY),
    ],
)
def test_admission_mechanism_by_what_the_server_serves(
    mode: str, served: set[str] | None, expected: Admission | None
) -> None:
    assert resolve_admission(mode, served) == expected


def test_forcing_native_policies_on_an_older_server_is_a_clear_error() -> None:
    with pytest.raises(AdmissionUnavailable, match="use --admission=webhook"):
        resolve_admission("policy", {"validatingadmissionpolicies"})
