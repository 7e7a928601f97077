"""The MutatingWebhookConfiguration: as narrow and as harmless as it can be."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualstack_operator.admission.mutation import CREATE_SERVICES, MATCH_CONDITIONS
from dualstack_operator.api.names import APP_NAME_LABEL, GROUP, NAME, SYSTEM_NAMESPACES

WEBHOOK_ID = "services-ip-families"


CONFIGURATION_NAME = NAME


TIMEOUT_SECONDS = 3  # the API server waits at most this long, then ignores us


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
            "labels": {APP_NAME_LABEL: NAME},
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


@dataclass(frozen=True)
class WebhookOptions:
    address: str = ""  # where the server listens ("": every address)
    port: int = 9443
    host: str = "127.0.0.1"  # how the API server reaches it (url mode)
    service: str | None = None  # "namespace/name[:port]": in-cluster (service mode)
    cert_dir: Path | None = None  # tls.crt, tls.key and ca.crt from a Secret; None: self-signed
    namespaces: tuple[str, ...] = ()
