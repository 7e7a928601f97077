"""Who owns a Service's IP-family fields, read from its managedFields (pure).

Server-side apply records, per field manager, the fields it set and whether it
set them by ``Apply`` (a declared source of truth: GitOps) or by ``Update`` (an
imperative write: fair game). The operator never takes fields another manager
applies unless a policy says ``fieldConflicts: Force``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FIELD_MANAGER = "dualstack-operator"
FAMILY_FIELDS = ("f:ipFamilyPolicy", "f:ipFamilies")


def _owns_family_fields(entry: Mapping[str, Any]) -> bool:
    spec = ((entry.get("fieldsV1") or {}).get("f:spec")) or {}
    return any(f in spec for f in FAMILY_FIELDS)


def family_appliers(managed_fields: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """Managers other than ours that hold ipFamilyPolicy or ipFamilies through an apply."""
    return tuple(
        sorted(
            {
                str(entry.get("manager", ""))
                for entry in managed_fields
                if entry.get("operation") == "Apply"
                and entry.get("manager") != FIELD_MANAGER
                and _owns_family_fields(entry)
            }
        )
    )


def last_family_writer(managed_fields: Iterable[Mapping[str, Any]]) -> str | None:
    """The manager other than ours that last wrote the family fields (who reverted us)."""
    writers = [
        (str(entry.get("time", "")), str(entry.get("manager", "")))
        for entry in managed_fields
        if entry.get("manager") != FIELD_MANAGER and _owns_family_fields(entry)
    ]
    return max(writers)[1] if writers else None
