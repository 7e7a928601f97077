"""Keeping the native admission objects in step, against a recording store."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from dualstack_operator.admission_sync import NativeAdmission
from dualstack_operator.cli import AdmissionUnavailable, resolve_admission
from dualstack_operator.errors import Conflict
from dualstack_operator.models import IPFamily
from dualstack_operator.native_admission import NAMESPACE_LABEL, Kind, object_name
from dualstack_operator.plan import PolicyView
from dualstack_operator.settings import Admission

CLUSTER = [IPFamily.IPV4, IPFamily.IPV6]


class Store:
    """The server's objects by (kind, name), with resourceVersions; records writes."""

    def __init__(self) -> None:
        self.objects: dict[tuple[Kind, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, Kind, str]] = []
        self.version = 0
        self.conflict_once = False

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(self.version)
        return obj

    async def list_admission_objects(self, kind: Kind, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]

    async def create_admission_object(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        key = (kind, body["metadata"]["name"])
        if key in self.objects or self.conflict_once:
            self.conflict_once = False
            raise Conflict(409, "already exists")
        self.writes.append(("create", kind, key[1]))
        self.objects[key] = self._stamp(body)
        return copy.deepcopy(self.objects[key])

    async def replace_admission_object(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        key = (kind, body["metadata"]["name"])
        if self.objects[key]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict(409, "stale")
        self.writes.append(("update", kind, key[1]))
        self.objects[key] = self._stamp(body)
        return copy.deepcopy(self.objects[key])

    async def delete_admission_object(self, kind: Kind, name: str) -> None:
        self.writes.append(("delete", kind, name))
        del self.objects[(kind, name)]


def policy(name: str, **spec: Any) -> PolicyView:
    return PolicyView.from_body(
        {
            "metadata": {
                "name": name,
                "namespace": "ns",
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": spec,
        }
    )


ENFORCE = policy("p", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"])
AUDIT = policy("q", ipFamilyPolicy="PreferDualStack", mode="Audit")


def test_objects_follow_policies_with_no_write_when_in_step() -> None:
    async def scenario() -> None:
        store = Store()
        native = NativeAdmission(store, enabled=True, namespaces=())
        await native.refresh()
        assert await native.sync("ns", [ENFORCE], CLUSTER) == 2
        assert [w[:2] for w in store.writes] == [
            ("create", Kind.MUTATING),
            ("create", Kind.MUTATING_BINDING),
        ]
        assert await native.sync("ns", [ENFORCE], CLUSTER) == 0, "in step: no write"
        # A restart knows only what it lists: still nothing to write.
        again = NativeAdmission(store, enabled=True, namespaces=())
        await again.refresh()
        assert again.namespaces() == {"ns"}
        assert await again.sync("ns", [ENFORCE], CLUSTER) == 0

        changed = policy("p", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4", "IPv6"])
        store.writes.clear()
        assert await again.sync("ns", [changed, AUDIT], CLUSTER) == 3
        assert store.writes == [
            ("update", Kind.MUTATING, object_name("ns")),
            ("create", Kind.VALIDATING, object_name("ns")),
            ("create", Kind.VALIDATING_BINDING, object_name("ns")),
        ]
        store.writes.clear()
        assert await again.sync("ns", [], CLUSTER) == 4
        assert [w[0] for w in store.writes] == ["delete"] * 4
        # Bindings go before the policies they bind.
        assert store.writes[0][1] == Kind.VALIDATING_BINDING
        assert store.objects == {}

    asyncio.run(scenario())


def test_disabled_only_removes_what_an_earlier_run_left() -> None:
    async def scenario() -> None:
        store = Store()
        native = NativeAdmission(store, enabled=True, namespaces=())
        await native.sync("ns", [ENFORCE, AUDIT], CLUSTER)
        off = NativeAdmission(store, enabled=False, namespaces=())
        await off.refresh()
        assert off.namespaces() == {"ns"}
        await off.sync("ns", [ENFORCE, AUDIT], CLUSTER)
        assert store.objects == {}

    asyncio.run(scenario())


def test_a_conflict_reads_again_and_retries_once() -> None:
    async def scenario() -> None:
        store = Store()
        native = NativeAdmission(store, enabled=True, namespaces=())
        await native.sync("ns", [ENFORCE], CLUSTER)
        # Another replica changed the object meanwhile: our resourceVersion is stale.
        key = (Kind.MUTATING, object_name("ns"))
        store.objects[key] = store._stamp(store.objects[key])
        changed = policy("p", ipFamilyPolicy="PreferDualStack")
        assert await native.sync("ns", [changed], CLUSTER) == 1
        assert store.writes[-1] == ("update", Kind.MUTATING, object_name("ns"))

    asyncio.run(scenario())


def test_a_namespaced_operator_selects_only_its_namespaces() -> None:
    native = NativeAdmission(Store(), enabled=True, namespaces=("b", "a"))
    assert native.selector.endswith(f",{NAMESPACE_LABEL} in (a,b)")


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
