"""The operator's writes as the API server saw them (its audit log, the operator's user)."""

from __future__ import annotations

from collections import Counter

from localcluster import LocalCluster


def operator_writes(cluster: LocalCluster, namespace: str) -> Counter[tuple[str, str, str]]:
    """(resource[/subresource], name, verb) -> count of accepted operator writes."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for event in cluster.audit_events():
        ref = event.get("objectRef") or {}
        if event["user"]["username"] != "dualstack-operator" or ref.get("namespace") != namespace:
            continue
        if "dryRun" in event.get("requestURI", ""):
            continue
        if (event.get("responseStatus") or {}).get("code", 0) >= 300:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        counts[(resource, ref.get("name", ""), event["verb"])] += 1
    return counts


def operator_attempts(cluster: LocalCluster, namespace: str, name: str) -> list[int]:
    """Response codes of every operator write to one Service (accepted or not)."""
    return [
        (e.get("responseStatus") or {}).get("code", 0)
        for e in cluster.audit_events()
        if e["user"]["username"] == "dualstack-operator"
        and (e.get("objectRef") or {}).get("namespace") == namespace
        and (e.get("objectRef") or {}).get("name") == name
        and (e.get("objectRef") or {}).get("resource") == "services"
    ]


def service_patches(counts: Counter[tuple[str, str, str]]) -> dict[str, int]:
    return {name: n for (res, name, verb), n in counts.items() if res == "services"}


ADMISSION_RESOURCES = (
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
)


def admission_writes(cluster: LocalCluster, name: str) -> Counter[tuple[str, str]]:
    """(resource, verb) -> accepted operator writes to the native admission objects ``name``."""
    counts: Counter[tuple[str, str]] = Counter()
    for event in cluster.audit_events():
        ref = event.get("objectRef") or {}
        if event["user"]["username"] != "dualstack-operator":
            continue
        if ref.get("resource") not in ADMISSION_RESOURCES or ref.get("name") != name:
            continue
        if (event.get("responseStatus") or {}).get("code", 0) >= 300:
            continue
        counts[(ref["resource"], event["verb"])] += 1
    return counts
