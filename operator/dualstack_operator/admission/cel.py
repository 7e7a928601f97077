"""Policies compiled for the API server's own admission: one shared policy, a table per namespace.

Pure. The API server applies one MutatingAdmissionPolicy (Enforce) and one
ValidatingAdmissionPolicy (Audit, a warning), each with one binding, whatever the
number of governed namespaces: their bindings resolve a parameter object, a
``DualStackAdmission`` named ``dualstack-admission``, in the namespace of the request,
and a namespace without one costs the server a single binding check
(``parameterNotFoundAction: Allow``); the Audit binding selects only a parameter
labelled as holding warnings, so Enforce-only namespaces never evaluate it. Neither
policy has matchConditions, which would cost the server a CEL activation each: what
they would exclude is the first variable. The parameter holds what the namespace's CEL
needs: its governing policies' selectors, oldest first, and a lookup table computed
by ``admission.creation_patch`` (the webhook's and, through it, the reconciler's
decision) over every shape a new Service's IP-family fields can take. The CEL is
generic: it finds the first policy whose selector matches (label-selector semantics,
as ``decision.selects``) and looks the answer up; nothing in it restates the rules.

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

from dualstack_operator.admission.mutation import CREATE_SERVICES, MATCH_CONDITIONS
from dualstack_operator.api.models import MAX_ADMISSION_POLICIES, IPFamily, IPFamilyPolicy, Mode
from dualstack_operator.api.names import (
    ADMISSION_KIND,
    API_VERSION,
    HASH_ANNOTATION,
    MANAGED_BY_LABEL,
    NAME,
    NAMESPACE_NAME_LABEL,
    PROBE_LABEL,
    SYSTEM_NAMESPACES,
    WARNINGS_LABEL,
)
from dualstack_operator.core.creation import audit_warning, creation_patch
from dualstack_operator.core.views import PolicyView

ADMISSION_API = "admissionregistration.k8s.io/v1"
POLICY_NAME = "services.dualstack.dev"  # the shared policies and their bindings
PARAMETER_NAME = "dualstack-admission"  # the DualStackAdmission in each governed namespace
# Per-namespace objects of earlier versions (dualstack.dev.<namespace>), removed once the
# shared policy serves.
# A dry-run probe labelled so comes back relabelled once the shared mutating policy serves.
PROBED = "served"


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
    "//": policy, families, then the families of the addresses it chose; the key into
    the winning policy's table."""
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


# Label-selector semantics over ``p.serviceSelector`` (a policy of the parameter's chain).
_SELECTS = (
    "(!has(p.serviceSelector) || ("
    "(!has(p.serviceSelector.matchLabels) || p.serviceSelector.matchLabels.all(k, "
    "k in variables.labels && variables.labels[k] == p.serviceSelector.matchLabels[k])) && "
    "(!has(p.serviceSelector.matchExpressions) || p.serviceSelector.matchExpressions.all(e, "
    "e.operator == 'In' ? (e.key in variables.labels && has(e.values) && "
    "variables.labels[e.key] in e.values) : "
    "e.operator == 'NotIn' ? (!(e.key in variables.labels) || !has(e.values) || "
    "!(variables.labels[e.key] in e.values)) : "
    "e.operator == 'Exists' ? (e.key in variables.labels) : !(e.key in variables.labels)))))"
)
_WINNER = (
    f"params.spec.policies.exists(p, {_SELECTS}) ? "
    f"params.spec.policies.filter(p, {_SELECTS})[0].name : ''"
)


def governing(policies: Iterable[PolicyView]) -> list[PolicyView]:
    """Policies that can win, in the order a Service is offered to them (oldest first)."""
    return sorted((p for p in policies if p.spec is not None), key=lambda p: (p.created, p.name))


@dataclass(frozen=True)
class Table:
    """One policy's answers by ``_shape`` key, as the parameter holds them: each distinct
    answer once (Enforce: "<ipFamilyPolicy>/<ipFamilies>"; Audit: the warning) and the
    shapes by index into them. A few answers serve about a hundred shapes, and the API
    server keeps every parameter in memory twice (its watch cache and the policies'
    informer): small integers cost it a tenth of what small objects do."""

    encoded: dict[str, Any]  # {"answers": [...], "shapes": {shape: index}}
    digest: str

    @classmethod
    def of(cls, answers: dict[str, str]) -> Table:
        distinct = sorted(set(answers.values()))
        index = {answer: i for i, answer in enumerate(distinct)}
        encoded = {"answers": distinct, "shapes": {k: index[v] for k, v in answers.items()}}
        return cls(encoded, digest(encoded))

    def answer(self, shape: str) -> str | None:
        """What the table answers for one shape (the Python twin of the CEL lookup)."""
        i = self.encoded["shapes"].get(shape)
        return None if i is None else str(self.encoded["answers"][i])


_TABLES: dict[tuple[Any, ...], Table] = {}
_TABLES_LIMIT = 1024  # distinct (spec, cluster) tables remembered; Audit ones by name too


def table(policy: PolicyView, cluster: Sequence[IPFamily]) -> Table:
    """The policy's table, computed once per spec (and, for Audit, per policy: the warning
    names it) and cluster, then shared by every namespace and pass that asks again."""
    spec = policy.spec
    assert spec is not None
    audit = spec.mode == Mode.AUDIT
    key = (policy.spec_json, tuple(cluster), (policy.kind, policy.name) if audit else None)
    found = _TABLES.get(key)
    if found is None:
        if len(_TABLES) >= _TABLES_LIMIT:
            _TABLES.clear()
        found = _TABLES[key] = Table.of(_compile(policy, cluster))
    return found


def _compile(policy: PolicyView, cluster: Sequence[IPFamily]) -> dict[str, str]:
    spec = policy.spec
    assert spec is not None
    answers: dict[str, str] = {}
    for field_policy, families, addresses in itertools.product(
        FIELD_POLICIES, FIELD_FAMILIES, FIELD_ADDRESSES
    ):
        wanted = creation_patch(spec, field_policy, families, cluster, addresses)
        if wanted is None:
            continue
        key = shape_key(field_policy, families, addresses)
        if spec.mode == Mode.AUDIT:
            # Validating admission sees the Service after the server's defaulting: both
            # fields are always set by then, and the warning judges them; of the
            # addresses, it tells only a chosen primary's family.
            if field_policy is not None and families and len(addresses) < 2:
                answers[key] = audit_warning(policy.kind, policy.name, wanted, families)
            continue
        answers[key] = f"{wanted['ipFamilyPolicy']}/{','.join(wanted.get('ipFamilies', []))}"
    return answers


def _chain(ordered: Sequence[PolicyView]) -> list[dict[str, Any]]:
    chain = []
    for policy in ordered:
        assert policy.spec is not None
        entry: dict[str, Any] = {"name": policy.name}
        if policy.spec.service_selector is not None:
            entry["serviceSelector"] = policy.spec.service_selector.model_dump(
                by_alias=True, exclude_none=True
            )
        chain.append(entry)
    return chain


def parameter_digest(policies: Iterable[PolicyView], cluster: Sequence[IPFamily]) -> str | None:
    """The hash a namespace's parameter carries (None: it needs none), without building
    it: what a pass compares with the server's copy."""
    ordered = governing(policies)[:MAX_ADMISSION_POLICIES]
    if not ordered:
        return None
    parts: list[Any] = [
        (p.name, p.selector_json, str(p.spec.mode), table(p, cluster).digest)  # type: ignore[union-attr]
        for p in ordered
    ]
    if any(p.spec.mode == Mode.AUDIT for p in ordered):  # type: ignore[union-attr]
        # Carries WARNINGS_LABEL (parameters written before it are rewritten once).
        parts.append(WARNINGS_LABEL)
    return digest(parts)


def parameter(
    namespace: str, policies: Iterable[PolicyView], cluster: Sequence[IPFamily]
) -> dict[str, Any] | None:
    """The namespace's ``DualStackAdmission``, or None when no policy governs it."""
    ordered = governing(policies)[:MAX_ADMISSION_POLICIES]
    if not ordered:
        return None
    mutations: dict[str, Any] = {}
    warnings: dict[str, Any] = {}
    for policy in ordered:
        assert policy.spec is not None
        encoded = table(policy, cluster).encoded
        if encoded["shapes"]:
            (warnings if policy.spec.mode == Mode.AUDIT else mutations)[policy.name] = encoded
    spec: dict[str, Any] = {"policies": _chain(ordered)}
    if mutations:
        spec["mutations"] = mutations
    if warnings:
        spec["warnings"] = warnings
    return {
        "apiVersion": API_VERSION,
        "kind": ADMISSION_KIND,
        "metadata": {
            "name": PARAMETER_NAME,
            "namespace": namespace,
            "labels": {
                MANAGED_BY_LABEL: NAME,
                **({WARNINGS_LABEL: "true"} if warnings else {}),
            },
            "annotations": {HASH_ANNOTATION: parameter_digest(ordered, cluster) or ""},
        },
        "spec": spec,
    }


def digest(value: Any) -> str:
    """A content hash (of an object's spec as we generate it): equal hashes, no write."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


# Marks the operator's own dry-run probes: proof that the shared policy serves.
_PROBE_LABEL_PATH = f"/metadata/labels/{PROBE_LABEL.replace('/', '~1')}"
_PROBE = (
    f"((has(object.metadata.labels) && {cel_string(PROBE_LABEL)} in object.metadata.labels) ? "
    f"[JSONPatch{{op: 'replace', path: {cel_string(_PROBE_LABEL_PATH)}, "
    f"value: {cel_string(PROBED)}}}] : [])"
)


# Whether a Service is one admission acts on (not ExternalName, not opted out): the
# webhook's matchConditions, evaluated as the policies' first variable instead. A
# policy's matchConditions cost the server a CEL activation of the Service of their own.
_ELIGIBLE = " && ".join(f"({c['expression']})" for c in MATCH_CONDITIONS)
# The winning policy's answer for the Service's shape ('' for none), from one table.
_ANSWER = (
    "(variables.eligible && has(params.spec.{table}) && "
    "variables.winner in params.spec.{table} && "
    "variables.shape in params.spec.{table}[variables.winner].shapes) ? "
    "params.spec.{table}[variables.winner].answers["
    "params.spec.{table}[variables.winner].shapes[variables.shape]] : ''"
)
# One mutation, not one per concern: the API server encodes the Service to JSON, applies
# the patch and strictly decodes it back once per mutation, even for an empty patch.
_MUTATE = (
    "(variables.answer == '' ? [] : "
    "[JSONPatch{op: 'add', path: '/spec/ipFamilyPolicy', "
    "value: variables.answer.split('/')[0]}] + "
    "(variables.answer.split('/')[1] == '' ? [] : [JSONPatch{op: 'add', "
    "path: '/spec/ipFamilies', value: variables.answer.split('/')[1].split(',')}])) + "
    f"{_PROBE}"
)


def _object(kind: Kind, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": ADMISSION_API,
        "kind": str(kind),
        "metadata": {
            "name": POLICY_NAME,
            "labels": {MANAGED_BY_LABEL: NAME},
            "annotations": {HASH_ANNOTATION: digest(spec)},
        },
        "spec": spec,
    }


def shared_objects() -> list[dict[str, Any]]:
    """The four objects every governed namespace shares, in the order they are created
    (bindings after their policies)."""
    common = {
        "paramKind": {"apiVersion": API_VERSION, "kind": ADMISSION_KIND},
        # What webhook_configuration asks of the API server, in a policy's terms.
        "matchConstraints": {"resourceRules": [CREATE_SERVICES]},
        "failurePolicy": "Ignore",
    }
    variables = [
        {"name": "eligible", "expression": _ELIGIBLE},
        {"name": "labels", "expression": _LABELS},
        {"name": "winner", "expression": _WINNER},
    ]
    mutating = {
        **common,
        "variables": [
            *variables,
            {"name": "shape", "expression": _shape(_ADDRESSES)},
            {"name": "answer", "expression": _ANSWER.format(table="mutations")},
        ],
        "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": _MUTATE}}],
        "reinvocationPolicy": "Never",
    }
    validating = {
        **common,
        "variables": [
            *variables,
            {"name": "shape", "expression": _shape(_CHOSEN_PRIMARY)},
            {"name": "answer", "expression": _ANSWER.format(table="warnings")},
        ],
        "validations": [
            {
                "expression": "variables.answer == ''",
                "messageExpression": "string(variables.answer)",
            }
        ],
    }
    binding: dict[str, Any] = {
        "policyName": POLICY_NAME,
        # The parameter of the request's own namespace, where the operator wrote one.
        "paramRef": {"name": PARAMETER_NAME, "parameterNotFoundAction": "Allow"},
        "matchResources": {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": NAMESPACE_NAME_LABEL,
                        "operator": "NotIn",
                        "values": list(SYSTEM_NAMESPACES),
                    }
                ]
            }
        },
    }
    # The Audit policy is not evaluated at all in a namespace whose parameter holds no
    # warnings: its binding selects the parameter by a label only such a parameter has.
    warn: dict[str, Any] = {
        **binding,
        "paramRef": {
            "selector": {"matchLabels": {WARNINGS_LABEL: "true"}},
            "parameterNotFoundAction": "Allow",
        },
        "validationActions": ["Warn"],
    }
    return [
        _object(Kind.MUTATING, mutating),
        _object(Kind.MUTATING_BINDING, binding),
        _object(Kind.VALIDATING, validating),
        _object(Kind.VALIDATING_BINDING, warn),
    ]


def spec_hash(obj: dict[str, Any]) -> str:
    """The hash an object was written with (its spec as we generated it)."""
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION, ""))
