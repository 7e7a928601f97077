"""Generates the DualStackPolicy CRD from the pydantic models (``make crds``).

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


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    spec_schema = openapi_schema(models.DualStackPolicySpec)
    status_schema = openapi_schema(models.DualStackPolicyStatus)
    description = (models.DualStackPolicy.__doc__ or "").strip()
    columns = [
        {"name": "Policy", "type": "string", "jsonPath": ".spec.ipFamilyPolicy"},
        {"name": "Families", "type": "string", "jsonPath": ".spec.ipFamilies"},
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
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
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{models.PLURAL}.{models.GROUP}"},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": models.SHORT_NAMES,
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
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


def render() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
