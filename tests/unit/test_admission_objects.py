"""What the operator asks the API server to run: the webhook configuration and the
native policies' parameters, compiled from the one decision (pure; the server's side is
in test_admission and test_native_admission)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dualstack_operator.admission.cel import (
    FIELD_ADDRESSES,
    FIELD_FAMILIES,
    FIELD_POLICIES,
    PARAMETER_NAME,
    POLICY_NAME,
    Kind,
    cel_string,
    digest,
    parameter,
    parameter_digest,
    shape_key,
    shared_objects,
    spec_hash,
    table,
)
from dualstack_operator.admission.configuration import webhook_configuration
from dualstack_operator.api.models import MAX_ADMISSION_POLICIES, IPFamily
from dualstack_operator.api.names import HASH_ANNOTATION, SYSTEM_NAMESPACES, WARNINGS_LABEL
from dualstack_operator.core.creation import creation_patch
from dualstack_operator.core.views import PolicyView
from support.views import policy_view

DUAL = [IPFamily.IPV4, IPFamily.IPV6]
CLIENT = {"url": "https://127.0.0.1:9443/mutate"}


def policy(name: str = "p", day: int = 1, **spec: Any) -> PolicyView:
    return policy_view(name, created=f"2026-01-{day:02}T00:00:00Z", **spec)


# --- the webhook configuration ----------------------------------------------------------


def test_the_webhook_can_never_block_a_create() -> None:
    (hook,) = webhook_configuration(CLIENT, [], None)["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] <= 3
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
    assert {c["name"] for c in hook["matchConditions"]} == {"not-external-name", "not-opted-out"}
    assert hook["clientConfig"] == CLIENT


def test_all_namespaces_but_the_system_ones_and_our_own() -> None:
    (hook,) = webhook_configuration(CLIENT, [], "dualstack-system")["webhooks"]
    (expr,) = hook["namespaceSelector"]["matchExpressions"]
    assert expr["operator"] == "NotIn"
    assert set(expr["values"]) == {*SYSTEM_NAMESPACES, "dualstack-system"}


def test_watched_namespaces_only() -> None:
    (hook,) = webhook_configuration(CLIENT, ["a", "b"], "dualstack-system")["webhooks"]
    assert hook["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}
    ]


# --- the CEL compiler -------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]},
        {"ipFamilyPolicy": "PreferDualStack"},
        {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]},
    ],
)
def test_the_table_is_the_decision_for_every_shape(spec: dict[str, Any]) -> None:
    """Every shape the fields can take: the table answers what creation_patch does."""
    view = policy(**spec)
    assert view.spec is not None
    compiled = table(view, DUAL)
    for field_policy, families, addresses in itertools.product(
        FIELD_POLICIES, FIELD_FAMILIES, FIELD_ADDRESSES
    ):
        wanted = creation_patch(view.spec, field_policy, families, DUAL, addresses)
        answer = compiled.answer(shape_key(field_policy, families, addresses))
        if wanted is None:
            assert answer is None, (field_policy, families, addresses)
        else:
            assert answer is not None, (field_policy, families, addresses)
            got_policy, _, got_families = answer.partition("/")
            assert got_policy == wanted["ipFamilyPolicy"]
            listed = got_families.split(",") if got_families else []
            assert listed == wanted.get("ipFamilies", [])


def test_tables_hold_each_answer_once() -> None:
    encoded = table(policy(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv6", "IPv4"]), DUAL)
    answers, shapes = encoded.encoded["answers"], encoded.encoded["shapes"]
    assert len(answers) == len(set(answers))
    assert len(answers) < 10 < len(shapes), "a few answers serve many shapes"
    assert set(shapes.values()) == set(range(len(answers)))


def test_audit_tables_warn_and_name_the_policy() -> None:
    view = policy("watcher", ipFamilyPolicy="RequireDualStack", mode="Audit")
    answers = table(view, DUAL).encoded["answers"]
    assert answers
    assert all("watcher" in a for a in answers)


def test_no_policy_no_parameter() -> None:
    assert parameter("ns", [], DUAL) is None
    assert parameter_digest([], DUAL) is None


def test_the_parameter_chains_policies_oldest_first_with_their_tables() -> None:
    young = policy("young", 9, ipFamilyPolicy="PreferDualStack", serviceSelector={})
    old = policy(
        "old",
        1,
        ipFamilyPolicy="RequireDualStack",
        serviceSelector={"matchLabels": {"tier": "web"}},
    )
    audit = policy("audit", 5, ipFamilyPolicy="RequireDualStack", mode="Audit")
    param = parameter("ns", [young, audit, old], DUAL)
    assert param is not None
    assert param["metadata"]["name"] == PARAMETER_NAME
    assert param["metadata"]["namespace"] == "ns"
    spec = param["spec"]
    assert [p["name"] for p in spec["policies"]] == ["old", "audit", "young"]
    assert spec["policies"][0]["serviceSelector"] == {"matchLabels": {"tier": "web"}}
    assert set(spec["mutations"]) == {"old", "young"}
    assert set(spec["warnings"]) == {"audit"}
    assert param["metadata"]["annotations"][HASH_ANNOTATION] == parameter_digest(
        [young, audit, old], DUAL
    )
    assert param["metadata"]["labels"][WARNINGS_LABEL] == "true"
    enforce_only = parameter("ns", [young, old], DUAL)
    assert enforce_only is not None
    assert WARNINGS_LABEL not in enforce_only["metadata"]["labels"]


def test_the_digest_follows_what_the_parameter_holds() -> None:
    base = [policy("p", ipFamilyPolicy="PreferDualStack")]
    same = [policy("p", ipFamilyPolicy="PreferDualStack")]
    narrower = [
        policy("p", ipFamilyPolicy="PreferDualStack", serviceSelector={"matchLabels": {"a": "b"}})
    ]
    assert parameter_digest(base, DUAL) == parameter_digest(same, DUAL)
    assert parameter_digest(base, DUAL) != parameter_digest(narrower, DUAL)
    assert parameter_digest(base, DUAL) != parameter_digest(base, [IPFamily.IPV4])


def test_the_parameter_holds_at_most_the_limit_of_policies() -> None:
    many = [policy(f"p{i:02}", 1 + i % 28, ipFamilyPolicy="PreferDualStack") for i in range(40)]
    param = parameter("ns", many, DUAL)
    assert param is not None
    assert len(param["spec"]["policies"]) == MAX_ADMISSION_POLICIES


def test_four_shared_objects_that_cannot_block_and_skip_the_system() -> None:
    objects = shared_objects()
    assert [o["kind"] for o in objects] == [
        str(Kind.MUTATING),
        str(Kind.MUTATING_BINDING),
        str(Kind.VALIDATING),
        str(Kind.VALIDATING_BINDING),
    ]
    assert {o["metadata"]["name"] for o in objects} == {POLICY_NAME}
    for policy_object in (objects[0], objects[2]):
        assert policy_object["spec"]["failurePolicy"] == "Ignore"
    assert objects[1]["spec"]["paramRef"] == {
        "name": PARAMETER_NAME,
        "parameterNotFoundAction": "Allow",
    }
    # Audit is evaluated only where a parameter holds warnings (and says so by a label).
    assert objects[3]["spec"]["paramRef"] == {
        "selector": {"matchLabels": {WARNINGS_LABEL: "true"}},
        "parameterNotFoundAction": "Allow",
    }
    for policy_object in (objects[0], objects[2]):
        # No matchConditions: each would cost the server a CEL activation of its own.
        assert "matchConditions" not in policy_object["spec"]
    for binding in (objects[1], objects[3]):
        (expr,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
        assert (expr["operator"], set(expr["values"])) == ("NotIn", set(SYSTEM_NAMESPACES))
    assert objects[3]["spec"]["validationActions"] == ["Warn"], "Audit never refuses"
    assert all(spec_hash(o) for o in objects), "each carries the hash it was written with"


@pytest.mark.parametrize("value", ['a"b', "a\\b", "line\nbreak", "x'y", "ünïcode"])
def test_cel_strings_are_escaped(value: str) -> None:
    literal = cel_string(value)
    assert literal.startswith('"')
    assert literal.endswith('"')
    inner = literal[1:-1]
    assert '"' not in inner.replace('\\"', "")
    assert "\n" not in literal
    assert literal.isascii()


def test_audit_parameters_of_the_previous_version_are_rewritten_with_the_label() -> None:
    # Before WARNINGS_LABEL, the Audit binding named the parameter; a parameter written
    # then, without the label, would no longer be selected: its hash must not match.
    audit = policy("audit", ipFamilyPolicy="RequireDualStack", mode="Audit")
    enforce = policy("enforce", 2, ipFamilyPolicy="PreferDualStack")

    def before(chain: list[PolicyView]) -> str:
        ordered = sorted(chain, key=lambda p: (p.created, p.name))
        return digest(
            [(p.name, p.selector_json, str(p.spec.mode), table(p, DUAL).digest) for p in ordered]  # type: ignore[union-attr]
        )

    for chain in ([audit], [enforce, audit]):
        assert parameter_digest(chain, DUAL) != before(chain)
    # Enforce-only parameters carry no label and keep their hash: no rewrite on upgrade.
    assert parameter_digest([enforce], DUAL) == before([enforce])
