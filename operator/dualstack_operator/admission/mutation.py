"""Services born compliant: the mutating webhook's pure part and its configuration.

On CREATE the API server has not defaulted the IP-family fields yet (admission
runs first), so the webhook fills them from the same decision the reconciler
uses, asking for exactly what the policy wants; the server then allocates the
primary ClusterIP from the right family, the one thing that cannot change later.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualstack_operator.api.models import (
    GROUP,
    IGNORE_ANNOTATION,
    DriftReason,
    DualStackPolicySpec,
    IPFamily,
    Mode,
)
from dualstack_operator.core.decision import State, address_families, decide
from dualstack_operator.core.plan import plan_namespace
from dualstack_operator.core.views import PolicyView, ServiceView

WEBHOOK_ID = "services-ip-families"
CONFIGURATION_NAME = "dualstack-operator"
TIMEOUT_SECONDS = 3  # the API server waits at most this long, then ignores us
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
CA_INJECTION_ANNOTATION = "cert-manager.io/inject-ca-from"


@dataclass(frozen=True)
class Mutation:
    """What the webhook does to one new Service: fields to set and/or a warning."""

    spec: dict[str, Any] | None = None
    warning: str | None = None


def creation_patch(
    spec: DualStackPolicySpec,
    field_policy: str | None,
    families: Sequence[str],
    cluster: Sequence[IPFamily],
    addresses: Sequence[str] | None = (),
) -> dict[str, Any] | None:
    """The fields to set on a new Service with these IP-family fields, or None.

    The one answer both admission paths give: the webhook calls it per request, and
    ``native_admission`` tabulates it for the API server. Nothing is allocated yet on
    CREATE, so a Service that names no address may still get any primary: decide as
    for a headless Service, whose families may change, asking for exactly what
    Enforce would patch. ``addresses`` are the families of the ClusterIPs the client
    chose (``decision.address_families``): those are fixed, in their order, as on a
    Service that exists, and the policy decides the rest. Where it cannot without
    dropping a chosen address (or the addresses cannot be read: None), the request is
    left as it is: admission never turns a create the server accepts into a refusal.
    """
    if addresses is None:
        return None
    pinned = list(addresses)
    svc = ServiceView(
        namespace="",
        name="",
        resource_version="",
        labels={},
        ignored=False,
        type="ClusterIP",
        headless=not pinned,
        ip_family_policy=field_policy,
        ip_families=tuple(pinned or families),
    )
    enforced = decide(spec.model_copy(update={"mode": Mode.ENFORCE}), svc, cluster)
    if enforced.patch is None:
        return None
    wanted = dict(enforced.patch["spec"])
    if pinned:
        target = list(wanted.get("ipFamilies", pinned))
        if target[: len(pinned)] != pinned:
            return None  # e.g. SingleStack, but the client chose an address of each family
        # Always both fields: the client's own ipFamilies must not outlive the decision.
        wanted["ipFamilies"] = target
    return wanted


def audit_warning(
    kind: str, policy: str, wanted: dict[str, Any], families: Sequence[str] = ()
) -> str:
    """What an Audit policy says instead of setting ``wanted`` (on a Service that has
    ``families``, which ``wanted`` keeps unless it names others)."""
    return (
        f"{kind} {policy} (Audit) would set "
        f"ipFamilyPolicy={wanted['ipFamilyPolicy']} "
        f"ipFamilies={','.join(wanted.get('ipFamilies', families))}; nothing was changed"
    )


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


def webhook_configuration(
    client_config: dict[str, Any], namespaces: Sequence[str], own_namespace: str | None
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration, as narrow and as harmless as it can be.

    failurePolicy Ignore and a short timeout: the operator being down, slow or
    wrong never blocks Service creation. Only CREATE of Services, only the watched
    namespaces (or all but the system ones), never ExternalName or opted-out ones.
    """
    if namespaces:
        ns_selector: dict[str, Any] = {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(namespaces)}
            ]
        }
    else:
        skip = [*SYSTEM_NAMESPACES, *([own_namespace] if own_namespace else [])]
        ns_selector = {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": skip}
            ]
        }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": CONFIGURATION_NAME,
            "labels": {"app.kubernetes.io/name": "dualstack-operator"},
        },
        "webhooks": [
            {
                "name": f"services.{GROUP}",
                "clientConfig": client_config,
                "rules": [CREATE_SERVICES],
                "namespaceSelector": ns_selector,
                "matchConditions": MATCH_CONDITIONS,
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "timeoutSeconds": TIMEOUT_SECONDS,
                "admissionReviewVersions": ["v1"],
                "matchPolicy": "Equivalent",
                "reinvocationPolicy": "Never",
            }
        ],
    }


def self_signed(directory: Path, hosts: Sequence[str]) -> tuple[Path, Path, bytes]:
    """A throwaway CA and serving certificate for local runs; returns cert, key, CA PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dualstack-operator webhook CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path, ca.public_bytes(serialization.Encoding.PEM)
