"""Generates the DualStackPolicy and ClusterDualStackPolicy CRDs from the models (``make crds``).

pydantic emits JSON Schema with ``$ref``s, titles and ``anyOf [X, null]`` for
optional fields; a CRD needs a structural OpenAPI v3 schema, so this inlines the
references and keeps only what Kubernetes accepts.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic import BaseModel

from dualstack_operator import models

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


def _columns(cluster: bool) -> list[dict[str, Any]]:
    columns = [
        {"name": "Policy", "type": "string", "jsonPath": ".spec.ipFamilyPolicy"},
        {"name": "Families", "type": "string", "jsonPath": ".spec.ipFamilies"},
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
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Admission", "type": "string", "jsonPath": ".status.admission"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def crd(cluster: bool = False) -> dict[str, Any]:
    """The CustomResourceDefinition (DualStackPolicy, or ClusterDualStackPolicy) as a dict."""
    if cluster:
        kind, plural, singular, short = (
            models.CLUSTER_KIND,
            models.CLUSTER_PLURAL,
            models.CLUSTER_SINGULAR,
            models.CLUSTER_SHORT_NAMES,
        )
        spec_model: type[BaseModel] = models.ClusterDualStackPolicySpec
        status_model: type[BaseModel] = models.ClusterDualStackPolicyStatus
        top: type[BaseModel] = models.ClusterDualStackPolicy
    else:
        kind, plural, singular, short = (
            models.KIND,
            models.PLURAL,
            models.SINGULAR,
            models.SHORT_NAMES,
        )
        spec_model, status_model, top = (
            models.DualStackPolicySpec,
            models.DualStackPolicyStatus,
            models.DualStackPolicy,
        )
    spec_schema = openapi_schema(spec_model)
    status_schema = openapi_schema(status_model)
    description = (top.__doc__ or "").strip()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{models.GROUP}"},
        "spec": {
            "group": models.GROUP,
            "scope": "Cluster" if cluster else "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short,
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _columns(cluster),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated from operator/dualstack_operator/models.py by `make crds`. Do not edit.\n"


def render(cluster: bool = False) -> str:
    return HEADER + yaml.safe_dump(crd(cluster), sort_keys=False, width=100)


def main() -> int:
    sys.stdout.write(render(cluster="--cluster" in sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
