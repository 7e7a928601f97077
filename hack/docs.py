"""Writes the generated reference pages (``make docs``; a unit test fails when they drift).

docs/reference/policy.md comes from the structural schema the CRDs are generated from
(``api.crd.openapi_schema`` of the pydantic models), so a field, default or rule cannot
be documented differently from what the API server enforces. docs/reference/cli.md
comes from the argparse parser the command line itself uses. Both are rendered here,
outside the package, because the parser lives in ``cli``, the top layer.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dualstack_operator.api import names
from dualstack_operator.api.crd import CLUSTER_POLICY, POLICY, Kind, openapi_schema
from dualstack_operator.cli import build_parser
from generated import write_all

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "docs" / "reference"
NONE = "—"


def cell(text: str) -> str:
    """Text fit for one Markdown table cell: one line, no column separator."""
    return " ".join(text.split()).replace("|", "\\|")


def code(values: Any) -> str:
    return ", ".join(f"`{v}`" for v in values)


def literal(value: Any) -> str:
    """A default as a code span; the empty string visibly so."""
    return f"`{value}`" if value != "" else '`""`'


def count(n: int, noun: str) -> str:
    """``1 item``, ``2 items``; ``entry`` is the one irregular noun used."""
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n} {noun if n == 1 else plural}"


def type_of(node: dict[str, Any]) -> str:
    """The field's type as Kubernetes reference pages write it: []string, map[string]string."""
    kind = str(node.get("type", "object"))
    if kind == "array":
        return "[]" + type_of(node.get("items", {}))
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return "map[string]" + type_of(node["additionalProperties"])
    if "format" in node:
        return f"{kind} ({node['format']})"
    return kind


def allowed(node: dict[str, Any]) -> str:
    """The values the schema admits, beyond the type: enums, bounds, patterns (of each
    item or map value, for lists and maps), then the size of a list or map."""
    target = node.get("items", node) if node.get("type") == "array" else node
    if isinstance(node.get("additionalProperties"), dict):
        target = node["additionalProperties"]
    out = [code(target["enum"])] if "enum" in target else []
    each = [f"{text} {target[key]}" for key, text in (("minimum", "≥"), ("maximum", "≤"))
            if key in target]  # fmt: skip
    for key, text in (("minLength", "at least"), ("maxLength", "at most")):
        if key in target:
            each.append(f"{text} {count(target[key], 'character')}")
    if "pattern" in target:
        each.append(f"matching `{target['pattern']}`")
    if each:
        out.append(("each " if target is not node else "") + ", ".join(each))
    for key, text, noun in (
        ("minItems", "at least", "item"),
        ("maxItems", "at most", "item"),
        ("maxProperties", "at most", "entry"),
    ):
        if key in node:
            out.append(f"{text} {count(node[key], noun)}")
    return "; ".join(out) or NONE


def rows(path: str, node: dict[str, Any], required: bool) -> Iterator[list[str]]:
    """One row per field, depth first, with dotted paths (``[]`` for list items), as
    ``kubectl explain`` names them."""
    description = str(node.get("description", ""))
    rules = [str(v["message"]) for v in node.get("x-kubernetes-validations", [])]
    if rules:
        description += " Rules: " + "; ".join(rules) + "."
    default = literal(node["default"]) if "default" in node else NONE
    yield [
        f"`{path}`",
        type_of(node),
        "required" if required else default,
        allowed(node),
        description or NONE,
    ]
    nested = node.get("items", {}) if node.get("type") == "array" else node
    prefix = f"{path}[]" if nested is not node else path
    needed = set(nested.get("required", []))
    for name, sub in nested.get("properties", {}).items():
        yield from rows(f"{prefix}.{name}", sub, name in needed)


def table(header: list[str], body: Iterator[list[str]] | list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(cell, row)) + " |" for row in body]


def kind_section(kind: Kind) -> list[str]:
    scope = "namespaced" if kind.scope == "Namespaced" else "cluster-scoped"
    short = f" (`kubectl get {', '.join(kind.short_names)}`)" if kind.short_names else ""
    out = [
        f"## {kind.kind}",
        "",
        cell(kind.top.__doc__ or ""),
        "",
        f"`apiVersion: {names.API_VERSION}`, `kind: {kind.kind}`, plural `{kind.plural}`"
        f"{short}, {scope}.",
        "",
        f"### `kubectl get {kind.plural}` columns",
        "",
        *table(
            ["column", "type", "JSONPath"],
            [[c["name"].upper(), c["type"], f"`{c['jsonPath']}`"] for c in kind.columns],
        ),
        "",
        "### spec",
        "",
        *fields("spec", kind.spec, True),
    ]
    if kind.status is not None:
        out += [
            "### status",
            "",
            "Written by the operator only.",
            "",
            *fields("status", kind.status, False),
        ]
    return out


def fields(section: str, model: type[BaseModel], required: bool) -> list[str]:
    """One section's field table (spec or status), from the model's OpenAPI schema."""
    return [
        *table(
            ["field", "type", "default", "allowed values", "description"],
            rows(section, openapi_schema(model), required),
        ),
        "",
    ]


def policy_md() -> str:
    lines = [
        "# Policy reference",
        "",
        "<!-- Generated from operator/dualstack_operator/api/models.py by `make docs`. "
        "Do not edit. -->",
        "",
        "Every field of the two policy kinds, from the schema the CRDs are generated from "
        "(the API server checks the types, the allowed values and the rules at "
        "`kubectl apply`). The reasons in `status` are in [reasons.md](reasons.md).",
        "",
    ]
    for kind in (POLICY, CLUSTER_POLICY):
        lines += kind_section(kind)
    return "\n".join(lines).rstrip() + "\n"


@contextlib.contextmanager
def environment_free() -> Iterator[None]:
    """Defaults that read the environment ($POD_NAMESPACE) render as they do without it."""
    saved = os.environ.pop("POD_NAMESPACE", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["POD_NAMESPACE"] = saved


def option_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    formatter = parser._get_formatter()
    out = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
        if action.choices is not None:
            value = "{" + ",".join(map(str, action.choices)) + "}"
            value = f"`[{value}]`" if action.nargs == "?" else f"`{value}`"
        elif action.nargs == 0:
            value = NONE
        else:
            value = f"`{action.metavar or action.dest.upper()}`"
        default = action.default
        shown = NONE if default in (None, False, [], argparse.SUPPRESS) else literal(default)
        described = formatter._expand_help(action) if action.help else ""
        if action.nargs == "?" and action.const is not None:
            described += f" (`{action.option_strings[-1]}` alone: `{action.const}`)"
        repeat = isinstance(action, argparse._AppendAction)
        if repeat and "repeatable" not in described:
            described += " (repeatable)"
        out.append([flags, value, shown, described or NONE])
    return out


def exclusive(parser: argparse.ArgumentParser) -> list[str]:
    return [
        " and ".join(f"`{a.option_strings[-1]}`" for a in group._group_actions)
        + " exclude each other."
        for group in parser._mutually_exclusive_groups
    ]


def cli_md() -> str:
    with environment_free():
        parser = build_parser()
    lines = [
        "# Command-line reference",
        "",
        "<!-- Generated from operator/dualstack_operator/cli.py by `make docs`. Do not edit. -->",
        "",
        f"`{parser.prog}` (and `kubectl dualstack`, the same program as a kubectl "
        f"plugin): {parser.description} Every command takes `-h`/`--help`.",
        "",
        *table(["option", "value", "default", "description"], option_rows(parser)),
        "",
    ]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    for name, command in sub.choices.items():
        summary = cell(helps.get(name, ""))
        lines += [f"## {parser.prog} {name}", "", summary[:1].upper() + summary[1:] + "."]
        if command.description:
            lines += ["", cell(command.description)]
        lines += [
            "",
            *table(["option", "value", "default", "description"], option_rows(command)),
        ]
        notes = exclusive(command)
        lines += ["", *notes, ""] if notes else [""]
    return "\n".join(lines).rstrip() + "\n"


def expected() -> dict[Path, str]:
    """Every generated page and its content."""
    return {REFERENCE / "policy.md": policy_md(), REFERENCE / "cli.md": cli_md()}


def main() -> int:
    return write_all(expected(), REPO)


if __name__ == "__main__":
    sys.exit(main())
