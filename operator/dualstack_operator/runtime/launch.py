"""Starting the operator: the checks before start, the admission path, then kopf."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, cast

from dualstack_operator.admission.configuration import WebhookOptions
from dualstack_operator.api.models import Admission
from dualstack_operator.runtime.preflight import (
    AdmissionUnavailable,
    StartupError,
    preflight,
    resolve_admission,
    wait_for_crds,
)
from dualstack_operator.runtime.settings import Settings

log = logging.getLogger("dualstack_operator")


def run(settings: Settings, admission_choice: str, webhook: WebhookOptions) -> int:
    """Runs until SIGINT/SIGTERM; kopf stops, and the operator's own tasks with it.
    ``admission_choice``: auto, policy, webhook or off, resolved against the server."""
    import dataclasses

    import kopf

    from dualstack_operator.runtime.handlers import App

    namespaces = list(settings.namespaces)
    try:
        found = asyncio.run(
            preflight(namespaces=namespaces, journal_namespace=settings.journal_namespace)
        )
        admission = resolve_admission(admission_choice, found.admission)
    except (StartupError, AdmissionUnavailable) as err:
        print(f"dualstack-operator: {err}", file=sys.stderr)
        return 1
    missing = found.missing_crds(admission)
    metrics = settings.metrics
    if missing:
        asyncio.run(wait_for_crds(missing, settings.liveness_port, (metrics.address, metrics.port)))
    if admission is not None:
        log.info(
            "admission: %s",
            "native MutatingAdmissionPolicies, applied by the API server"
            if admission == Admission.POLICY
            else "the operator's mutating webhook",
        )
    app = App(
        dataclasses.replace(settings, admission=admission, recreate_unavailable=found.recreate)
    )
    if admission == Admission.WEBHOOK:
        from dualstack_operator.admission import webhook as _  # noqa: F401 (registers handlers)

        app.webhook = webhook
    peering = settings.peering
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        memo=kopf.Memo(app=app),
        standalone=peering is None,
        peering_name=peering.name if peering else None,
        priority=peering.priority if peering else 0,
        # kopf's Identity is a NewType of str, not exported
        identity=cast(Any, peering.identity if peering else None),
        liveness_endpoint=None,  # the App serves /healthz on both families (health.py)
    )
    return 0
