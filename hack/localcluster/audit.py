"""The API server's audit log, and the questions the tests and benches ask of it.

Writes are counted from the server's side: what it accepted from the operator's
identities, not what the operator believes it sent. Only those identities are logged
(reads too on a fault-test cluster), so populating tens of thousands of Services
stays fast.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUDIT_LOG = "audit.log"
OPERATOR = "dualstack-operator"  # the operator_kubeconfig's client certificate
OPERATOR_USERS = [
    OPERATOR,
    "system:serviceaccount:dualstack-system:dualstack-operator",  # as deployed
    "system:serviceaccount:dualstack-helm:dualstack-operator",  # the chart, in the node test
]
WRITE_VERBS = ["create", "update", "patch", "delete"]


def policy(reads: bool = False, users: Sequence[str] = ()) -> dict[str, Any]:
    """The audit policy: the operator's writes to what it manages (and, with ``reads``,
    every request of its identities), at Metadata level, and the same writes of
    ``users`` (a peer the benches compare with); nothing of anyone else."""
    rules: list[dict[str, Any]] = [
        {
            "level": "Metadata",
            "users": [*OPERATOR_USERS, *users],
            "verbs": WRITE_VERBS,
            "resources": [
                {"group": "", "resources": ["services"]},
                {
                    "group": "dualstack.dev",
                    "resources": [
                        "dualstackpolicies",
                        "dualstackpolicies/status",
                        "dualstackadmissions",
                    ],
                },
                {
                    "group": "admissionregistration.k8s.io",
                    "resources": [
                        "mutatingadmissionpolicies",
                        "mutatingadmissionpolicybindings",
                        "validatingadmissionpolicies",
                        "validatingadmissionpolicybindings",
                    ],
                },
            ],
        },
    ]
    if reads:
        rules.append({"level": "Metadata", "users": OPERATOR_USERS})
    rules.append({"level": "None"})
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": rules,
    }


@dataclass(frozen=True)
class Request:
    """One request as the API server logged it."""

    at: float  # when the server received it (Unix seconds)
    user: str
    verb: str
    resource: str  # "services", "dualstackpolicies/status", or the URI of a non-resource
    namespace: str
    name: str
    code: int
    dry_run: bool

    @property
    def accepted(self) -> bool:
        return self.code < 300

    @classmethod
    def of(cls, event: dict[str, Any]) -> Request:
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", event.get("requestURI", ""))
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        return cls(
            at=datetime.datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp(),
            user=event["user"]["username"],
            verb=event["verb"],
            resource=resource,
            namespace=ref.get("namespace", ""),
            name=ref.get("name", ""),
            code=(event.get("responseStatus") or {}).get("code", 0),
            dry_run="dryRun" in event.get("requestURI", ""),
        )


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self) -> list[dict[str, Any]]:
        """Completed requests, oldest first."""
        if not self.path.exists():
            return []
        events = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("stage") == "ResponseComplete":
                    events.append(event)
        return events

    def requests(self, user: str = OPERATOR) -> Iterator[Request]:
        return (r for r in map(Request.of, self.events()) if r.user == user)

    def writes(self, namespace: str) -> Counter[tuple[str, str, str]]:
        """(resource[/subresource], name, verb) -> the operator's accepted writes in
        ``namespace`` (dry runs are not writes)."""
        return Counter(
            (r.resource, r.name, r.verb)
            for r in self.requests()
            if r.namespace == namespace and r.accepted and not r.dry_run
        )

    def attempts(self, namespace: str, name: str) -> list[int]:
        """Response codes of every operator write to one Service, accepted or not."""
        return [
            r.code
            for r in self.requests()
            if (r.namespace, r.name, r.resource) == (namespace, name, "services")
        ]

    def parameter_writes(self, namespace: str) -> Counter[str]:
        """verb -> accepted operator writes to the namespace's DualStackAdmission."""
        return Counter(
            r.verb
            for r in self.requests()
            if r.resource == "dualstackadmissions" and r.namespace == namespace and r.accepted
        )

    def between(self, since: float, until: float, user: str = OPERATOR) -> list[Request]:
        """Every request of ``user`` received in [since, until) (fault-test clusters log
        reads too)."""
        return [r for r in self.requests(user) if since <= r.at < until]

    def by_object(self, prefix: str) -> tuple[Counter[str], Counter[str]]:
        """Accepted Service writes and status writes per "namespace/name", in the
        namespaces whose names start with ``prefix`` (the benches' count)."""
        services: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        for r in self.requests():
            if r.verb not in WRITE_VERBS or not r.namespace.startswith(prefix) or not r.accepted:
                continue
            key = f"{r.namespace}/{r.name}"
            if r.resource == "services" and not r.dry_run:
                services[key] += 1
            elif r.resource.endswith("/status"):
                statuses[key] += 1
        return services, statuses


def service_patches(counts: Counter[tuple[str, str, str]]) -> dict[str, int]:
    """name -> writes, of ``AuditLog.writes`` to Services."""
    return {name: n for (res, name, _), n in counts.items() if res == "services"}


def busiest_second(requests: list[Request]) -> int:
    """The most requests received within any one second."""
    times = sorted(r.at for r in requests)
    best, lo = 0, 0
    for hi, at in enumerate(times):
        while at - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
