"""The reference pages say what the code does (pure: no API server): every reason the
code has is documented, the code writes no reason that is not a named one, and the
generated pages are what ``make docs`` renders from the models and the CLI."""

from __future__ import annotations

import ast
import re
from enum import StrEnum
from pathlib import Path

import pytest

from docs import REPO, expected
from dualstack_operator.api.models import DriftReason
from dualstack_operator.api.reasons import ConditionReason, ConditionType, EventReason

REASONS = REPO / "docs" / "reference" / "reasons.md"
PACKAGE = REPO / "operator" / "dualstack_operator"
# Each section of reasons.md documents these, one `### Name` heading each.
SECTIONS: dict[str, tuple[type[StrEnum], ...]] = {
    "Drift reasons": (DriftReason,),
    "Events": (EventReason,),
    "Conditions": (ConditionType, ConditionReason),
}
# Literals that are the same word as a reason without being one: printer column
# headers and the plan's verdict.
NOT_REASONS = {("api/crd.py", "Ready"), ("api/crd.py", "Compliant")}
NOT_REASONS |= {("migration/report.py", "Compliant")}


def headings(text: str) -> dict[str, list[str]]:
    """``## Section`` -> the ``### Name`` headings under it."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            out.setdefault(section, [])
        elif line.startswith("### "):
            out.setdefault(section, []).append(line[4:].strip())
    return out


def test_every_reason_has_its_entry_in_the_reference() -> None:
    found = headings(REASONS.read_text())
    for section, enums in SECTIONS.items():
        names = {str(member) for enum in enums for member in enum}
        documented = found.get(section, [])
        missing = sorted(names - set(documented))
        assert not missing, f"docs/reference/reasons.md, ## {section}, lacks ### {missing}"
        stale = sorted(set(documented) - names)
        assert not stale, f"docs/reference/reasons.md, ## {section}: no such reason {stale}"
        assert len(documented) == len(set(documented)), f"## {section} repeats a heading"


def test_the_reference_links_to_its_own_headings() -> None:
    """Each ``(#anchor)`` is a heading's anchor as a forge makes it (lower case, spaces
    to hyphens, punctuation dropped): a renamed heading breaks no link silently."""
    text = REASONS.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if line.startswith("#")
    }
    broken = sorted(set(re.findall(r"\]\(#([^)]+)\)", text)) - anchors)
    assert not broken, f"docs/reference/reasons.md links to missing headings: {broken}"


def test_the_code_writes_no_reason_but_the_named_ones() -> None:
    """A reason spelt as a string literal anywhere in the package but the modules that
    define the enums would be one the reference (and the test above) cannot know of."""
    names = {str(m) for enums in SECTIONS.values() for enum in enums for m in enum}
    defining = {PACKAGE / "api" / "models.py", PACKAGE / "api" / "reasons.py"}
    spelt = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in defining:
            continue
        where = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Constant) or node.value not in names:
                continue
            if (where, node.value) not in NOT_REASONS:
                spelt.append(f"{where}:{node.lineno}: {node.value!r}")
    assert not spelt, "use the enums of api/reasons.py or api/models.py: " + ", ".join(spelt)


@pytest.mark.parametrize("path", sorted(expected()), ids=lambda p: p.name)
def test_generated_reference_is_current(path: Path) -> None:
    name = path.relative_to(REPO)
    assert path.exists(), f"{name} is missing: run `make docs`"
    assert path.read_text() == expected()[path], f"{name} is stale: run `make docs`"
