"""Who owns a Service's IP-family fields, read from its managedFields (pure).

Server-side apply records, per field manager, the fields it set and whether it
set them by ``Apply`` (a declared source of truth: GitOps) or by ``Update`` (an
imperative write: fair game). The operator never takes fields another manager
applies unless a policy says ``fieldConflicts: Force``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dualstack_operator.api.names import FIELD_MANAGER

FAMILY_FIELDS = ("f:ipFamilyPolicy", "f:ipFamilies")


def _owns_family_fields(entry: Mapping[str, Any]) -> bool:
    spec = ((entry.get("fieldsV1") or {}).get("f:spec")) or {}
    return any(f in spec for f in FAMILY_FIELDS)


def family_owners(
    managed_fields: Iterable[Mapping[str, Any]],
) -> tuple[tuple[str, ...], str | None]:
    """One pass over managedFields (every cached Service goes through it): the managers
    other than ours that hold ipFamilyPolicy or ipFamilies through an apply, and the one
    of them (any operation) that wrote those fields last (who reverted us)."""
    appliers: set[str] = set()
    last: tuple[str, str] | None = None
    for entry in managed_fields:
        manager = str(entry.get("manager", ""))
        if manager == FIELD_MANAGER or not _owns_family_fields(entry):
            continue
        if entry.get("operation") == "Apply":
            appliers.add(manager)
        written = (str(entry.get("time", "")), manager)
        last = written if last is None else max(last, written)
    return tuple(sorted(appliers)), last[1] if last else None
