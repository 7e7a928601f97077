"""Generates the project's CRDs from the models (``make crds``).

pydantic emits JSON Schema with ``$ref``s, titles and ``anyOf [X, null]`` for
optional fields; a CRD needs a structural OpenAPI v3 schema, so this inlines the
references and keeps only what Kubernetes accepts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from dualstack_operator.api import models, names
from dualstack_operator.api.reasons import ConditionType

_DROP = {"title", "$defs"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    any_of = node.get("anyOf")
    if any_of is not None:
        # Optional[X] is anyOf [X, null]: absence already means "not set" in Kubernetes.
        rest = [b for b in any_of if b != {"type": "null"}]
        if len(rest) != 1:
            raise ValueError(f"cannot express anyOf {any_of} structurally")
        merged = {**rest[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        if merged.get("default", 0) is None:
            del merged["default"]
        return _structural(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = _structural(value, defs)
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (by alias, as users write it)."""
    raw = model.model_json_schema(by_alias=True, mode="serialization")
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _structural(raw, defs)
    return schema


@dataclass(frozen=True)
class Kind:
    """One of the project's CRDs: its names, models, scope and printer columns."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    top: type[BaseModel]
    spec: type[BaseModel]
    status: type[BaseModel] | None
    scope: str
    columns: list[dict[str, Any]]
    file: str  # under crds/


def _policy_columns(cluster: bool) -> list[dict[str, Any]]:
    columns = [
        {"name": "Policy", "type": "string", "jsonPath": ".spec.ipFamilyPolicy"},
        # A column's JSONPath prints a list as JSON: the operator writes it joined.
        {"name": "Families", "type": "string", "jsonPath": ".status.families"},
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
    ]
    if cluster:
        columns.append(
            {"name": "Namespaces", "type": "integer", "jsonPath": ".status.governedNamespaces"}
        )
    return [
        *columns,
        {"name": "Matched", "type": "integer", "jsonPath": ".status.matchedServices"},
        {"name": "Compliant", "type": "integer", "jsonPath": ".status.compliantServices"},
        {"name": "Drifted", "type": "integer", "jsonPath": ".status.driftedServices"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": f'.status.conditions[?(@.type=="{ConditionType.READY}")].status',
        },
        {"name": "Admission", "type": "string", "jsonPath": ".status.admission"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


POLICY = Kind(
    names.KIND,
    names.PLURAL,
    names.SINGULAR,
    names.SHORT_NAMES,
    models.DualStackPolicy,
    models.DualStackPolicySpec,
    models.DualStackPolicyStatus,
    "Namespaced",
    _policy_columns(cluster=False),
    "dualstackpolicy.yaml",
)
CLUSTER_POLICY = Kind(
    names.CLUSTER_KIND,
    names.CLUSTER_PLURAL,
    names.CLUSTER_SINGULAR,
    names.CLUSTER_SHORT_NAMES,
    models.ClusterDualStackPolicy,
    models.ClusterDualStackPolicySpec,
    models.ClusterDualStackPolicyStatus,
    "Cluster",
    _policy_columns(cluster=True),
    "clusterdualstackpolicy.yaml",
)
ADMISSION = Kind(
    names.ADMISSION_KIND,
    names.ADMISSION_PLURAL,
    names.ADMISSION_SINGULAR,
    [],
    models.DualStackAdmission,
    models.DualStackAdmissionSpec,
    None,
    "Namespaced",
    [
        {"name": "Policies", "type": "string", "jsonPath": ".spec.policies[*].name"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    "dualstackadmission.yaml",
)
KINDS = (POLICY, CLUSTER_POLICY, ADMISSION)


def crd(kind: Kind = POLICY) -> dict[str, Any]:
    """The CustomResourceDefinition of one of the project's kinds, as a dict."""
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": openapi_schema(kind.spec),
    }
    version: dict[str, Any] = {"name": names.VERSION, "served": True, "storage": True}
    if kind.status is not None:
        properties["status"] = openapi_schema(kind.status)
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = kind.columns
    version["schema"] = {
        "openAPIV3Schema": {
            "type": "object",
            "description": " ".join((kind.top.__doc__ or "").split()),
            "required": ["spec"],
            "properties": properties,
        }
    }
    naming: dict[str, Any] = {
        "kind": kind.kind,
        "listKind": f"{kind.kind}List",
        "plural": kind.plural,
        "singular": kind.singular,
    }
    if kind.short_names:
        naming["shortNames"] = kind.short_names
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{names.GROUP}"},
        "spec": {
            "group": names.GROUP,
            "scope": kind.scope,
            "names": naming,
            "versions": [version],
        },
    }


HEADER = "# Generated from operator/dualstack_operator/models.py by `make crds`. Do not edit.\n"


def render(kind: Kind = POLICY) -> str:
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    """Writes every CRD into the directory given (``make crds``: crds/)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dualstack_operator.api.crd DIR", file=sys.stderr)
        return 2
    for kind in KINDS:
        (Path(args[0]) / kind.file).write_text(render(kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
