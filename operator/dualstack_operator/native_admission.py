"""Policies compiled into native admission objects: the API server applies them itself.

Pure: from one namespace's DualStackPolicies and the cluster's families to the
MutatingAdmissionPolicy (Enforce) and ValidatingAdmissionPolicy (Audit, a warning)
with their bindings. Nothing here restates the rules: the mutation is a lookup
table computed by ``admission.creation_patch`` (the webhook's and, through it, the
reconciler's decision) over every shape the IP-family fields of a new Service can
take; CEL only picks the winning policy (the same selector chain as
``plan.plan_namespace``) and looks the answer up.

The key is the request's own fields: ``ipFamilyPolicy``, ``ipFamilies`` and the
families of any ClusterIPs the client chose (``isIP``/``ip().family()``), so an
address the client pinned keeps its family, as the decision says.

One difference from the webhook is the API server's, not ours: a validating policy
runs after the server has defaulted ``ipFamilyPolicy`` and ``ipFamilies`` and
allocated the ClusterIPs, so an Audit warning judges the fields the Service will be
stored with (a Service whose defaults already satisfy the policy gets a warning from
the webhook only). Of the addresses it can still tell whether the client chose the
primary (the request's managedFields name ``clusterIP``), not whether it chose one
address or two: it judges a chosen primary alone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dualstack_operator.admission import (
    CREATE_SERVICES,
    MATCH_CONDITIONS,
    audit_warning,
    creation_patch,
)
from dualstack_operator.models import IPFamily, IPFamilyPolicy, LabelSelector, Mode
from dualstack_operator.plan import PolicyView

API_VERSION = "admissionregistration.k8s.io/v1"
OWNER_LABEL = "app.kubernetes.io/managed-by"
OWNER = "dualstack-operator"
NAMESPACE_LABEL = "dualstack.dev/namespace"
HASH_ANNOTATION = "dualstack.dev/spec-hash"
NAME_PREFIX = "dualstack.dev."


class Kind(StrEnum):
    """The four kinds, in the order they are created (bindings after their policies)."""

    MUTATING = "MutatingAdmissionPolicy"
    MUTATING_BINDING = "MutatingAdmissionPolicyBinding"
    VALIDATING = "ValidatingAdmissionPolicy"
    VALIDATING_BINDING = "ValidatingAdmissionPolicyBinding"

    @property
    def resource(self) -> str:
        """The kind as the generated client names its calls (``create_<resource>``)."""
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in self.value).lstrip("_")


# Every value a new Service's IP-family fields can validly have, and every order of
# families its chosen ClusterIPs can fix: the table's domain.
FIELD_POLICIES: tuple[str | None, ...] = (None, *(str(p) for p in IPFamilyPolicy))
FIELD_FAMILIES: tuple[tuple[str, ...], ...] = (
    (),
    *((str(f),) for f in IPFamily),
    *itertools.permutations([str(f) for f in IPFamily], 2),
)
FIELD_ADDRESSES = FIELD_FAMILIES

# The family of one ClusterIP ('?' where it is not an address: such a key is in no
# table, so the request passes as it is).
_ADDRESS_FAMILY = "(isIP({a}) ? (ip({a}).family() == 4 ? 'IPv4' : 'IPv6') : '?')"
_IPS = "object.spec.clusterIPs"
_FIRST, _SECOND = _ADDRESS_FAMILY.format(a=f"{_IPS}[0]"), _ADDRESS_FAMILY.format(a=f"{_IPS}[1]")
# The families of the ClusterIPs a request chose, in order ("" for none or headless).
_ADDRESSES = (
    f"(has({_IPS}) && size({_IPS}) > 0) ? ({_IPS}[0] == 'None' ? '' : "
    f"size({_IPS}) == 1 ? {_FIRST} : size({_IPS}) == 2 ? {_FIRST} + ',' + {_SECOND} : '?') : "
    "(has(object.spec.clusterIP) && object.spec.clusterIP != '' && "
    "object.spec.clusterIP != 'None') ? "
    f"{_ADDRESS_FAMILY.format(a='object.spec.clusterIP')} : ''"
)
# Validating admission sees the Service after the server allocated its ClusterIPs. Its
# managedFields still say which fields the request set (the server records them before
# it allocates), so the family of a primary address the client chose can be told from
# one the server picked.
_CHOSE_ADDRESS = (
    "has(object.metadata.managedFields) && object.metadata.managedFields.exists(m, "
    "has(m.fieldsV1) && 'f:spec' in dyn(m.fieldsV1) && "
    "('f:clusterIP' in dyn(m.fieldsV1)['f:spec'] || 'f:clusterIPs' in dyn(m.fieldsV1)['f:spec']))"
)
_CHOSEN_PRIMARY = (
    f"(({_CHOSE_ADDRESS}) && has({_IPS}) && size({_IPS}) > 0 && {_IPS}[0] != 'None') ? "
    f"{_FIRST} : ''"
)


def _shape(addresses: str) -> str:
    """The Service's own fields as one string, e.g. "RequireDualStack/IPv6,IPv4/IPv4" or
    "//": policy, families, then the families of the addresses it chose; the table key
    after the winning policy's name."""
    return (
        "(has(object.spec.ipFamilyPolicy) ? object.spec.ipFamilyPolicy : '') + '/' + "
        "(!has(object.spec.ipFamilies) ? '' : "
        "size(object.spec.ipFamilies) == 1 ? object.spec.ipFamilies[0] : "
        "size(object.spec.ipFamilies) == 2 ? "
        "object.spec.ipFamilies[0] + ',' + object.spec.ipFamilies[1] : '?') + '/' + "
        f"({addresses})"
    )


_LABELS = "has(object.metadata.labels) ? object.metadata.labels : {}"


def shape_key(policy: str | None, families: Sequence[str], addresses: Sequence[str] = ()) -> str:
    """What ``_shape`` evaluates to for these fields (the Python twin of the CEL)."""
    return f"{policy or ''}/{','.join(families)}/{','.join(addresses)}"


def cel_string(value: str) -> str:
    """A CEL string literal: JSON's escapes are all valid CEL escapes."""
    return json.dumps(value, ensure_ascii=True)


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(cel_string(v) for v in values) + "]"


def selector_cel(selector: LabelSelector | None) -> str:
    """``decision.selects`` as CEL over ``variables.labels``; absent selects everything."""
    if selector is None:
        return "true"
    terms: list[str] = []
    for key, value in (selector.match_labels or {}).items():
        k = cel_string(key)
        terms.append(f"({k} in variables.labels && variables.labels[{k}] == {cel_string(value)})")
    for req in selector.match_expressions or []:
        k = cel_string(req.key)
        present = f"{k} in variables.labels"
        values = _list(req.values or [])
        if req.operator == "In":
            terms.append(f"({present} && variables.labels[{k}] in {values})")
        elif req.operator == "NotIn":
            terms.append(f"(!({present}) || !(variables.labels[{k}] in {values}))")
        elif req.operator == "Exists":
            terms.append(f"({present})")
        else:  # DoesNotExist
            terms.append(f"(!({present}))")
    return " && ".join(terms) or "true"


def governing(policies: Iterable[PolicyView]) -> list[PolicyView]:
    """Policies that can win, in the order a Service is offered to them (oldest first)."""
    return sorted((p for p in policies if p.spec is not None), key=lambda p: (p.created, p.name))


def winner_cel(ordered: Sequence[PolicyView]) -> str:
    """The name of the first policy whose selector matches, else ''."""
    expr = "''"
    for policy in reversed(ordered):
        assert policy.spec is not None
        expr = (
            f"({selector_cel(policy.spec.service_selector)}) ? {cel_string(policy.name)} : {expr}"
        )
    return expr


@dataclass(frozen=True)
class Tables:
    """Per (winning policy, field shape): what Enforce sets, and what Audit warns."""

    set_policy: dict[str, str]
    set_families: dict[str, list[str]]
    warnings: dict[str, str]


def tables(ordered: Sequence[PolicyView], cluster: Sequence[IPFamily]) -> Tables:
    set_policy: dict[str, str] = {}
    set_families: dict[str, list[str]] = {}
    warnings: dict[str, str] = {}
    for policy in ordered:
        spec = policy.spec
        assert spec is not None
        for field_policy, families, addresses in itertools.product(
            FIELD_POLICIES, FIELD_FAMILIES, FIELD_ADDRESSES
        ):
            wanted = creation_patch(spec, field_policy, families, cluster, addresses)
            if wanted is None:
                continue
            key = f"{policy.name}|{shape_key(field_policy, families, addresses)}"
            if spec.mode == Mode.AUDIT:
                # Validating admission sees the Service after the server's defaulting:
                # both fields are always set by then, and the warning judges them; of
                # the addresses, it tells only a chosen primary's family.
                if field_policy is not None and families and len(addresses) < 2:
                    warnings[key] = audit_warning(policy.kind, policy.name, wanted, families)
                continue
            set_policy[key] = str(wanted["ipFamilyPolicy"])
            if "ipFamilies" in wanted:
                set_families[key] = list(wanted["ipFamilies"])
    return Tables(set_policy, set_families, warnings)


def _map_literal(table: dict[str, Any]) -> str:
    items = ", ".join(
        f"{cel_string(k)}: {cel_string(v) if isinstance(v, str) else _list(v)}"
        for k, v in sorted(table.items())
    )
    return "{" + items + "}"


def object_name(namespace: str) -> str:
    return f"{NAME_PREFIX}{namespace}"


def _metadata(namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "name": object_name(namespace),
        "labels": {OWNER_LABEL: OWNER, NAMESPACE_LABEL: namespace},
        "annotations": {HASH_ANNOTATION: digest},
    }


def _object(kind: Kind, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": str(kind),
        "metadata": _metadata(namespace, spec),
        "spec": spec,
    }


def _binding_spec(namespace: str) -> dict[str, Any]:
    return {
        "policyName": object_name(namespace),
        "matchResources": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        },
    }


def desired_objects(
    namespace: str, policies: Iterable[PolicyView], cluster: Sequence[IPFamily]
) -> list[dict[str, Any]]:
    """The admission objects one namespace needs: none, a mutating pair, a validating pair."""
    ordered = governing(policies)
    if not ordered:
        return []
    table = tables(ordered, cluster)
    common = {
        # What webhook_configuration asks of the API server, in a policy's terms.
        "matchConstraints": {"resourceRules": [CREATE_SERVICES]},
        "matchConditions": MATCH_CONDITIONS,
        "failurePolicy": "Ignore",
    }
    variables = [
        {"name": "labels", "expression": _LABELS},
        {"name": "winner", "expression": winner_cel(ordered)},
    ]
    objects: list[dict[str, Any]] = []
    if table.set_policy:
        patch = (
            "(variables.key in variables.setPolicy ? [JSONPatch{op: 'add', "
            "path: '/spec/ipFamilyPolicy', value: variables.setPolicy[variables.key]}] : []) + "
            "(variables.key in variables.setFamilies ? [JSONPatch{op: 'add', "
            "path: '/spec/ipFamilies', value: variables.setFamilies[variables.key]}] : [])"
        )
        mutating = {
            **common,
            "variables": [
                *variables,
                {"name": "key", "expression": f"variables.winner + '|' + {_shape(_ADDRESSES)}"},
                {"name": "setPolicy", "expression": _map_literal(table.set_policy)},
                {"name": "setFamilies", "expression": _map_literal(table.set_families)},
            ],
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": patch}}],
            "reinvocationPolicy": "Never",
        }
        objects += [
            _object(Kind.MUTATING, namespace, mutating),
            _object(Kind.MUTATING_BINDING, namespace, _binding_spec(namespace)),
        ]
    if table.warnings:
        validating = {
            **common,
            "variables": [
                *variables,
                {
                    "name": "key",
                    "expression": f"variables.winner + '|' + {_shape(_CHOSEN_PRIMARY)}",
                },
                {"name": "warnings", "expression": _map_literal(table.warnings)},
            ],
            "validations": [
                {
                    "expression": "!(variables.key in variables.warnings)",
                    "messageExpression": "variables.warnings[variables.key]",
                }
            ],
        }
        binding = {**_binding_spec(namespace), "validationActions": ["Warn"]}
        objects += [
            _object(Kind.VALIDATING, namespace, validating),
            _object(Kind.VALIDATING_BINDING, namespace, binding),
        ]
    return objects


def spec_hash(obj: dict[str, Any]) -> str:
    """The hash an object was written with (its spec as we generated it)."""
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION, ""))
