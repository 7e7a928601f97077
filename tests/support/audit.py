"""The operator's writes as the API server saw them (its audit log, the operator's user)."""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass

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


def parameter_writes(cluster: LocalCluster, namespace: str) -> Counter[str]:
    """verb -> accepted operator writes to the namespace's DualStackAdmission parameter."""
    counts: Counter[str] = Counter()
    for event in cluster.audit_events():
        ref = event.get("objectRef") or {}
        if event["user"]["username"] != "dualstack-operator":
            continue
        if ref.get("resource") != "dualstackadmissions" or ref.get("namespace") != namespace:
            continue
        if (event.get("responseStatus") or {}).get("code", 0) >= 300:
            continue
        counts[event["verb"]] += 1
    return counts


@dataclass(frozen=True)
class Request:
    """One operator request as the API server logged it (fault-test clusters log all)."""

    at: float  # when the server received it (Unix seconds)
    verb: str
    resource: str
    namespace: str
    name: str
    code: int


def operator_requests(
    cluster: LocalCluster, since: float, until: float, user: str = "dualstack-operator"
) -> list[Request]:
    """Every request of the operator's user received in [since, until)."""
    out = []
    for event in cluster.audit_events():
        if event["user"]["username"] != user:
            continue
        at = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        if not since <= at < until:
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", event.get("requestURI", ""))
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        code = (event.get("responseStatus") or {}).get("code", 0)
        out.append(
            Request(
                at, event["verb"], resource, ref.get("namespace", ""), ref.get("name", ""), code
            )
        )
    return out


def busiest_second(requests: list[Request]) -> int:
    """The most requests received within any one second."""
    times = sorted(r.at for r in requests)
    best, lo = 0, 0
    for hi, at in enumerate(times):
        while at - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
