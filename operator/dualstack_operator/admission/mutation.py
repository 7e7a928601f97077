"""Services born compliant: the mutating webhook's pure part and its configuration.

On CREATE the API server has not defaulted the IP-family fields yet (admission
runs first), so the webhook fills them from the same decision the reconciler
uses, asking for exactly what the policy wants; the server then allocates the
primary ClusterIP from the right family, the one thing that cannot change later.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dualstack_operator.api.models import DriftReason, IPFamily, Mode
from dualstack_operator.api.names import IGNORE_ANNOTATION
from dualstack_operator.core.creation import audit_warning, creation_patch
from dualstack_operator.core.decision import State, address_families
from dualstack_operator.core.plan import plan_namespace
from dualstack_operator.core.views import PolicyView, ServiceView


@dataclass(frozen=True)
class Mutation:
    """What the webhook does to one new Service: fields to set and/or a warning."""

    spec: dict[str, Any] | None = None
    warning: str | None = None


def mutation(
    policies: Iterable[PolicyView], body: dict[str, Any], cluster: Sequence[IPFamily]
) -> Mutation:
    """The fields a new Service needs to be born compliant (pure; shared decision)."""
    policies = list(policies)
    if not policies:
        return Mutation()  # the fast path: no policy in this namespace
    svc = ServiceView.from_body(body)
    for plan in plan_namespace(policies, [svc], cluster):
        decision = plan.decisions.get(svc.name)
        spec = plan.policy.spec
        if decision is None or decision.reason == DriftReason.CONFLICT or spec is None:
            continue
        if decision.state == State.EXCLUDED:
            return Mutation()  # ExternalName or opted out
        wanted = creation_patch(
            spec,
            svc.ip_family_policy,
            svc.ip_families,
            cluster,
            address_families(body.get("spec") or {}),
        )
        if wanted is None:
            return Mutation()
        if spec.mode == Mode.AUDIT:
            warning = audit_warning(plan.policy.kind, plan.policy.name, wanted, svc.ip_families)
            return Mutation(warning=warning)
        return Mutation(spec=wanted)
    return Mutation()


# What both admission paths intercept: Service CREATE, nothing else.
CREATE_SERVICES: dict[str, Any] = {
    "operations": ["CREATE"],
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "resources": ["services"],
    "scope": "Namespaced",
}
# ... and never an ExternalName or opted-out Service: the API server skips those itself.
MATCH_CONDITIONS: list[dict[str, str]] = [
    {
        "name": "not-external-name",
        "expression": "!has(object.spec.type) || object.spec.type != 'ExternalName'",
    },
    {
        "name": "not-opted-out",
        "expression": "!has(object.metadata.annotations) || "
        f"!('{IGNORE_ANNOTATION}' in object.metadata.annotations) || "
        f"object.metadata.annotations['{IGNORE_ANNOTATION}'] != 'true'",
    },
]


REVIEW_API_VERSIONS = ("admission.k8s.io/v1",)


def malformed_review(doc: Any) -> str | None:
    """Why a body is not an AdmissionReview the webhook can answer (None: it is one).

    The API server only ever sends well-formed reviews; anything else reaching the
    port is answered 400 before any handler runs, and the server stays up.
    """
    if not isinstance(doc, dict):
        return "the body is not a JSON object"
    if doc.get("kind") != "AdmissionReview" or doc.get("apiVersion") not in REVIEW_API_VERSIONS:
        return f"not an AdmissionReview of {', '.join(REVIEW_API_VERSIONS)}"
    request = doc.get("request")
    if not isinstance(request, dict):
        return "request is missing or not an object"
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        return "request.uid is missing"
    if not isinstance(request.get("operation"), str):
        return "request.operation is missing"
    if not isinstance(request.get("userInfo"), dict):
        return "request.userInfo is missing"
    for key in ("object", "oldObject"):
        obj = request.get(key)
        if obj is None:
            continue
        if not isinstance(obj, dict):
            return f"request.{key} is not an object"
        for part in ("metadata", "spec"):
            if part in obj and not isinstance(obj[part], dict):
                return f"request.{key}.{part} is not an object"
    if request.get("object") is None and request.get("oldObject") is None:
        return "request.object is missing"
    return None
