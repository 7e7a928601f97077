"""The webhook's pure part: what a new Service is given, and which bodies are refused
before any handler runs (the API server's own part is in test_admission)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dualstack_operator.admission.mutation import Mutation, malformed_review, mutation
from dualstack_operator.api.models import IPFamily
from dualstack_operator.api.names import IGNORE_ANNOTATION
from dualstack_operator.core.views import PolicyView
from support.views import policy_view

DUAL = [IPFamily.IPV4, IPFamily.IPV6]


def policy(name: str = "p", created: str = "2026-01-01T00:00:00Z", **spec: Any) -> PolicyView:
    return policy_view(name, created=created, **spec)


def service(labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "ns", "labels": labels or {}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec},
    }


IPV6_FIRST = policy(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"])


def test_no_policy_no_mutation() -> None:
    assert mutation([], service(), DUAL) == Mutation()


def test_a_new_service_is_given_what_the_policy_wants() -> None:
    got = mutation([IPV6_FIRST], service(), DUAL)
    assert got.spec == {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}
    assert got.warning is None


def test_a_service_already_as_the_policy_wants_is_left_alone() -> None:
    body = service(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"])
    assert mutation([IPV6_FIRST], body, DUAL) == Mutation()


def test_a_chosen_cluster_ip_keeps_its_family_first() -> None:
    got = mutation([IPV6_FIRST], service(clusterIP="10.96.0.10"), DUAL)
    assert got.spec == {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}


@pytest.mark.parametrize(
    "body",
    [
        service(type="ExternalName", externalName="example.com"),
        {**service(), "metadata": {"name": "web", "annotations": {IGNORE_ANNOTATION: "true"}}},
    ],
    ids=["external-name", "opted-out"],
)
def test_excluded_services_pass_through(body: dict[str, Any]) -> None:
    assert mutation([IPV6_FIRST], body, DUAL) == Mutation()


def test_services_outside_the_selector_are_untouched() -> None:
    narrow = policy(ipFamilyPolicy="PreferDualStack", serviceSelector={"matchLabels": {"t": "x"}})
    assert mutation([narrow], service(), DUAL) == Mutation()
    selected = mutation([narrow], service(labels={"t": "x"}), DUAL).spec
    assert selected is not None
    assert selected["ipFamilyPolicy"] == "PreferDualStack"


def test_audit_warns_and_sets_nothing() -> None:
    audit = policy(ipFamilyPolicy="RequireDualStack", mode="Audit")
    got = mutation([audit], service(), DUAL)
    assert got.spec is None
    assert got.warning is not None
    assert "RequireDualStack" in got.warning


def test_the_oldest_policy_decides() -> None:
    old = policy("old", "2026-01-01T00:00:00Z", ipFamilyPolicy="SingleStack", ipFamilies=["IPv6"])
    new = policy("new", "2026-02-01T00:00:00Z", ipFamilyPolicy="RequireDualStack")
    got = mutation([new, old], service(), DUAL)
    assert got.spec == {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}


def test_the_body_is_not_modified() -> None:
    body = service()
    before = copy.deepcopy(body)
    mutation([IPV6_FIRST], body, DUAL)
    assert body == before


def review(**request: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uid": "u-1",
        "operation": "CREATE",
        "userInfo": {"username": "alice"},
        "object": service(),
    }
    base.update(request)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": base}


def test_a_well_formed_review_passes() -> None:
    assert malformed_review(review()) is None


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([1, 2], "the body is not a JSON object"),
        ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"}, "not an Admiss"),
        ({"kind": "Pod", "apiVersion": "admission.k8s.io/v1"}, "not an AdmissionReview"),
        ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}, "request is missing"),
        (review(uid=""), "request.uid is missing"),
        (review(uid=7), "request.uid is missing"),
        (review(operation=None), "request.operation is missing"),
        (review(userInfo="alice"), "request.userInfo is missing"),
        (review(object="a string"), "request.object is not an object"),
        (review(object={"metadata": [], "spec": {}}), "request.object.metadata is not an obj"),
        (review(object={"spec": "x"}), "request.object.spec is not an object"),
        (review(oldObject=3), "request.oldObject is not an object"),
        (review(object=None), "request.object is missing"),
    ],
)
def test_malformed_reviews_are_named(doc: Any, reason: str) -> None:
    found = malformed_review(doc)
    assert found is not None
    assert found.startswith(reason)


def test_a_delete_review_with_only_the_old_object_is_well_formed() -> None:
    assert malformed_review(review(object=None, oldObject=service(), operation="DELETE")) is None
